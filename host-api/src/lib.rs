//! The Stockade sandbox: how one tool call runs.
//!
//! [`Sandbox`] owns the wasmtime engine; [`Sandbox::load`] turns a component
//! file into a [`LoadedComponent`]; [`Sandbox::call`] runs one tool in a
//! fresh instance under a [`ToolGrant`]. Each capability the host grants
//! lives in its own module: [`fs`], [`egress`], [`context`], [`log`],
//! `sockets` (shut); the bounds in [`limits`]; what the host refused during
//! a call in [`refusals`]. Nothing outside this crate touches wasmtime.

mod cache;
mod call;
pub mod context;
mod contract;
pub mod egress;
mod engine;
pub mod fs;
pub mod limits;
pub mod log;
pub mod refusals;
pub mod secrets;
mod sockets;

use std::path::PathBuf;
use std::sync::Arc;

pub use call::{CallError, CallReport, LimitKind};
pub use context::{CALL_DEPTH_HEADER, CallerIdentity};
pub use contract::DescribeError;
pub use egress::EgressPolicy;
pub use engine::{LoadedComponent, Sandbox, SandboxSettings};
pub use fs::{FsGrant, FsMode};
pub use limits::{CallLimits, OversizePolicy};

/// Everything a manifest grants one tool, in the sandbox's terms.
#[derive(Debug, Clone)]
pub struct ToolGrant {
    /// Name used in logs.
    pub label: String,
    /// Per-call bounds.
    pub limits: CallLimits,
    /// Directories.
    pub fs: Vec<FsGrant>,
    /// Network.
    pub egress: Arc<EgressPolicy>,
    /// Credentials injected into the tool's requests, if it has any.
    pub secrets: Option<Arc<secrets::SecretGrant>>,
}

/// One tool a component offers, as the host understands it.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolDescriptor {
    /// Tool name.
    pub name: String,
    /// Human title.
    pub title: Option<String>,
    /// What it does.
    pub description: String,
    /// JSON Schema of its arguments.
    pub input_schema: serde_json::Value,
    /// JSON Schema of its structured result.
    pub output_schema: Option<serde_json::Value>,
    /// Behaviour hints.
    pub hints: ToolHints,
}

/// Hints a tool declares about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ToolHints {
    /// Does not modify anything.
    pub read_only: bool,
    /// May destroy data.
    pub destructive: bool,
    /// Repeating a call has no further effect.
    pub idempotent: bool,
    /// Talks to the outside world.
    pub open_world: bool,
}

/// One item of a tool's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContentItem {
    /// Plain text.
    Text(String),
    /// JSON text.
    Json(String),
    /// An image.
    Image {
        /// Raw bytes.
        data: Vec<u8>,
        /// e.g. `image/png`.
        mime_type: String,
    },
    /// A sound.
    Audio {
        /// Raw bytes.
        data: Vec<u8>,
        /// e.g. `audio/wav`.
        mime_type: String,
    },
    /// An embedded resource.
    Resource {
        /// Its URI.
        uri: String,
        /// Its type, when the tool names one.
        mime_type: Option<String>,
        /// Its contents.
        body: ResourceBody,
    },
}

/// What an embedded resource holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceBody {
    /// Text.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}

/// A successful tool result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolOutput {
    /// Content items, in order.
    pub content: Vec<ContentItem>,
    /// Structured result as JSON text, if the tool gave one.
    pub structured: Option<String>,
    /// Whether `max_output` cut the result (`on_oversize = "truncate"`);
    /// structured content is then dropped.
    pub truncated: bool,
}

impl ToolOutput {
    /// Bytes of content and structured text, the measure `max_output` bounds.
    pub fn size_bytes(&self) -> u64 {
        let items: usize =
            self.content
                .iter()
                .map(|item| match item {
                    ContentItem::Text(t) | ContentItem::Json(t) => t.len(),
                    ContentItem::Image { data, mime_type }
                    | ContentItem::Audio { data, mime_type } => data.len() + mime_type.len(),
                    ContentItem::Resource {
                        uri,
                        mime_type,
                        body,
                    } => {
                        uri.len()
                            + mime_type.as_ref().map_or(0, String::len)
                            + match body {
                                ResourceBody::Text(t) => t.len(),
                                ResourceBody::Blob(b) => b.len(),
                            }
                    }
                })
                .sum();
        (items + self.structured.as_ref().map_or(0, String::len)) as u64
    }
}

/// The error a tool itself returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToolFailure {
    /// The arguments were unusable.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The tool refused.
    #[error("denied: {0}")]
    Denied(String),
    /// Anything else.
    #[error("{0}")]
    Failed(String),
}

/// Why the sandbox could not load or describe a component.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The component file could not be read.
    #[error("cannot read component {}: {reason}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        reason: String,
    },
    /// The component's digest differs from the pinned one.
    #[error("component {} has sha256 {actual}, but the manifest pins {pinned}", path.display())]
    DigestMismatch {
        /// The file.
        path: PathBuf,
        /// Digest in the manifest.
        pinned: String,
        /// Digest of the file.
        actual: String,
    },
    /// wasmtime refused to compile the component.
    #[error("cannot compile component: {0}")]
    Compile(String),
    /// The component does not fit a known contract or imports something not granted.
    #[error("component does not fit a contract Stockade serves: {0}")]
    Contract(String),
    /// The component's tool list was unusable.
    #[error("cannot list the component's tools: {0}")]
    Describe(String),
    /// The compiled-artefact cache could not be used.
    #[error("cache directory {}: {reason}", path.display())]
    Cache {
        /// The directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A granted directory could not be opened.
    #[error("granted directory for {guest_path} cannot be opened")]
    GrantUnavailable {
        /// The guest path of the grant.
        guest_path: String,
    },
    /// The machine does not allow what the configuration asks for (e.g.
    /// `ulimit -v` below the pool's reservation); the message has the numbers.
    #[error("{0}")]
    Resources(String),
    /// Anything else in the host.
    #[error("internal sandbox error: {0}")]
    Internal(String),
}
