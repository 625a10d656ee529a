//! Secrets capability: credentials the host injects into a tool's outgoing
//! requests on its behalf, so the tool never holds them.
//!
//! A [`SecretBinding`] says where one credential goes (one header with a
//! format, or one query parameter) and for which destinations; the tool has
//! no say in it ([`inject`]). Values come from a [`SecretSource`] at call
//! time. Every value injected is remembered for the life of the process by
//! the sandbox's [`Redactor`] ([`redact`]), which scrubs any run of K of
//! its characters, in common encodings, from responses, results, errors and
//! logs ([`scrub`]).

pub mod inject;
pub mod redact;
pub mod scrub;

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use crate::egress::{Destination, EgressRule};

pub use redact::{REDACTED, Redactor, Scrubber};

/// Where a credential is placed in a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// A header, e.g. `Authorization` with format `Bearer {}`.
    Header {
        /// Header name.
        name: http::HeaderName,
        /// Value template; `{}` stands for the secret.
        format: String,
    },
    /// A query parameter appended to the URL.
    Query {
        /// Parameter name.
        param: String,
    },
}

/// One credential a tool may have injected, without its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretBinding {
    /// The name the manifest gives it (`[secrets.NAME]`).
    pub name: String,
    /// The only destinations whose requests carry it.
    pub destinations: Vec<EgressRule>,
    /// How it is placed in those requests.
    pub placement: Placement,
}

impl SecretBinding {
    /// Whether requests to `dest` carry this secret.
    pub fn binds(&self, dest: &Destination) -> bool {
        self.destinations.iter().any(|rule| rule.covers(dest))
    }
}

/// A secret's value. It never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    /// Wraps a value read from the backend.
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The value, for injection only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue([redacted])")
    }
}

/// Why a secret could not be had. Carries no value, token or path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("secret `{name}` is unavailable: {reason}")]
pub struct SecretUnavailable {
    /// The manifest's name for the secret.
    pub name: String,
    /// A short, detail-free reason.
    pub reason: &'static str,
}

/// A boxed future, as returned by [`SecretSource::fetch`].
pub type FetchFuture<'a> =
    Pin<Box<dyn Future<Output = Result<SecretValue, SecretUnavailable>> + Send + 'a>>;

/// Produces the current value of a tool's secrets (from Vault, or a
/// development file). Implementations cache and refresh as they see fit.
pub trait SecretSource: Send + Sync {
    /// The value of the secret the manifest calls `name`.
    fn fetch<'a>(&'a self, name: &'a str) -> FetchFuture<'a>;
}

/// A tool's secrets: the bindings its manifest declares and where their
/// values come from.
pub struct SecretGrant {
    /// One entry per `[secrets.NAME]`.
    pub bindings: Vec<SecretBinding>,
    /// Where values are read at call time.
    pub source: std::sync::Arc<dyn SecretSource>,
}

impl fmt::Debug for SecretGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretGrant")
            .field("bindings", &self.bindings)
            .finish_non_exhaustive()
    }
}
