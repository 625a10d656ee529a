//! Secrets capability: credentials the host injects into a tool's outgoing
//! requests on its behalf, so the tool never holds them.
//!
//! A [`SecretBinding`] says where one credential goes (a header with a
//! format, or a query parameter) and for which destinations. Values come
//! from a [`SecretSource`] at call time. Every value injected during a call
//! is remembered by the call's [`Redactor`], which scrubs it (raw and in
//! common encodings) from responses, results, errors and logs.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};

use crate::egress::{Destination, EgressRule};

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

/// Shortest value the host accepts: anything shorter cannot be redacted
/// without mangling ordinary output.
pub const MIN_SECRET_LEN: usize = 8;

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

/// The values injected during one call, and how to scrub them.
#[derive(Clone, Default)]
pub struct Redactor {
    needles: Vec<String>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redactor({} needles)", self.needles.len())
    }
}

/// What replaces a scrubbed value.
pub const REDACTED: &str = "[redacted]";

impl Redactor {
    /// Remembers `value` and its common encodings.
    pub fn add(&mut self, value: &SecretValue) {
        let raw = value.expose();
        let bytes = raw.as_bytes();
        let candidates = [
            raw.to_owned(),
            STANDARD.encode(bytes),
            STANDARD_NO_PAD.encode(bytes),
            URL_SAFE.encode(bytes),
            URL_SAFE_NO_PAD.encode(bytes),
            hex::encode(bytes),
            hex::encode_upper(bytes),
            percent_encode(raw),
            percent_encode(raw).replace("%20", "+"),
            serde_json::to_string(raw)
                .map(|s| s[1..s.len() - 1].to_owned())
                .unwrap_or_default(),
        ];
        for needle in candidates {
            if needle.len() >= MIN_SECRET_LEN && !self.needles.contains(&needle) {
                self.needles.push(needle);
            }
        }
        // Longest first, so an encoding that contains another is removed whole.
        self.needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
    }

    /// Whether nothing has been injected.
    pub fn is_empty(&self) -> bool {
        self.needles.is_empty()
    }

    /// `text` with every known value replaced by [`REDACTED`].
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for needle in &self.needles {
            if out.contains(needle.as_str()) {
                out = out.replace(needle.as_str(), REDACTED);
            }
        }
        out
    }

    /// `bytes` with every known value replaced by [`REDACTED`].
    pub fn redact_bytes(&self, bytes: &[u8]) -> Vec<u8> {
        let mut out = bytes.to_vec();
        for needle in &self.needles {
            out = replace_bytes(&out, needle.as_bytes(), REDACTED.as_bytes());
        }
        out
    }
}

impl Redactor {
    /// A result with every injected value scrubbed from its content.
    pub fn scrub_output(&self, output: crate::ToolOutput) -> crate::ToolOutput {
        use crate::ContentItem;
        if self.is_empty() {
            return output;
        }
        crate::ToolOutput {
            content: output
                .content
                .into_iter()
                .map(|item| match item {
                    ContentItem::Text(t) => ContentItem::Text(self.redact(&t)),
                    ContentItem::Json(t) => ContentItem::Json(self.redact(&t)),
                    ContentItem::Image { data, mime_type } => ContentItem::Image {
                        data: self.redact_bytes(&data),
                        mime_type: self.redact(&mime_type),
                    },
                })
                .collect(),
            structured: output.structured.map(|s| self.redact(&s)),
        }
    }

    /// An error with every injected value scrubbed from its message.
    pub fn scrub_error(&self, error: crate::CallError) -> crate::CallError {
        use crate::{CallError, ToolFailure};
        if self.is_empty() {
            return error;
        }
        match error {
            CallError::Tool(ToolFailure::InvalidInput(m)) => {
                CallError::Tool(ToolFailure::InvalidInput(self.redact(&m)))
            }
            CallError::Tool(ToolFailure::Denied(m)) => {
                CallError::Tool(ToolFailure::Denied(self.redact(&m)))
            }
            CallError::Tool(ToolFailure::Failed(m)) => {
                CallError::Tool(ToolFailure::Failed(self.redact(&m)))
            }
            CallError::Crashed(m) => CallError::Crashed(self.redact(&m)),
            other => other,
        }
    }
}

fn replace_bytes(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut rest = haystack;
    while let Some(at) = rest.windows(needle.len()).position(|w| w == needle) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(with);
        rest = &rest[at + needle.len()..];
    }
    out.extend_from_slice(rest);
    out
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The placeholder a tool may put in a header value: `{{secret:NAME}}`.
pub fn placeholder(name: &str) -> String {
    format!("{{{{secret:{name}}}}}")
}

/// Names of the placeholders in `text`.
pub fn placeholders_in(text: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{secret:") {
        let after = &rest[start + "{{secret:".len()..];
        match after.find("}}") {
            Some(end) => {
                names.push(&after[..end]);
                rest = &after[end + 2..];
            }
            None => break,
        }
    }
    names
}

/// Whether a URL mentions a placeholder, raw or percent-encoded.
pub fn url_mentions_placeholder(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    lower.contains("{{secret:") || lower.contains("%7b%7bsecret")
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

impl SecretGrant {
    /// Puts the secrets bound to `dest` into `request`: placeholders in
    /// header values first, then every binding's own placement. Returns
    /// whether anything was injected; refuses (with a message naming the
    /// rule) a placeholder for a secret not bound to `dest`, a placeholder
    /// outside a header value, or a secret that cannot be read.
    pub(crate) async fn inject<B>(
        &self,
        dest: &Destination,
        request: &mut http::Request<B>,
        redactor: &std::sync::Mutex<Redactor>,
    ) -> Result<bool, String> {
        if url_mentions_placeholder(&request.uri().to_string()) {
            return Err(
                "egress denied: secret placeholders are only substituted in header values".into(),
            );
        }
        let mut injected = false;
        let names: Vec<(http::HeaderName, String)> = request
            .headers()
            .iter()
            .filter_map(|(name, value)| {
                let text = value.to_str().ok()?;
                (!placeholders_in(text).is_empty()).then(|| (name.clone(), text.to_owned()))
            })
            .collect();
        for (header, template) in names {
            let mut filled = template.clone();
            for name in placeholders_in(&template) {
                let binding = self
                    .bindings
                    .iter()
                    .find(|b| b.name == name && b.binds(dest))
                    .ok_or_else(|| {
                        format!("egress denied: secret `{name}` is not bound to {dest}")
                    })?;
                let value = self.value(&binding.name, redactor).await?;
                filled = filled.replace(&placeholder(name), value.expose());
            }
            let value = http::HeaderValue::from_str(&filled)
                .map_err(|_| "egress denied: a secret is not a valid header value".to_owned())?;
            request.headers_mut().insert(header, value);
            injected = true;
        }
        for binding in self.bindings.iter().filter(|b| b.binds(dest)) {
            let value = self.value(&binding.name, redactor).await?;
            match &binding.placement {
                Placement::Header { name, format } => {
                    let text = format.replace("{}", value.expose());
                    let header = http::HeaderValue::from_str(&text).map_err(|_| {
                        format!(
                            "egress denied: secret `{}` is not a valid header value",
                            binding.name
                        )
                    })?;
                    request.headers_mut().insert(name.clone(), header);
                }
                Placement::Query { param } => {
                    let uri = request.uri();
                    let path = uri.path();
                    let pair = format!(
                        "{}={}",
                        percent_encode(param),
                        percent_encode(value.expose())
                    );
                    let query = match uri.query() {
                        Some(q) if !q.is_empty() => format!("{q}&{pair}"),
                        _ => pair,
                    };
                    let mut parts = uri.clone().into_parts();
                    parts.path_and_query =
                        Some(format!("{path}?{query}").parse().map_err(|_| {
                            "egress denied: cannot place secret in the URL".to_owned()
                        })?);
                    *request.uri_mut() = http::Uri::from_parts(parts)
                        .map_err(|_| "egress denied: cannot place secret in the URL".to_owned())?;
                }
            }
            injected = true;
        }
        if injected {
            // A compressed echo would slip past redaction: ask for none.
            request.headers_mut().insert(
                http::header::ACCEPT_ENCODING,
                http::HeaderValue::from_static("identity"),
            );
        }
        Ok(injected)
    }

    async fn value(
        &self,
        name: &str,
        redactor: &std::sync::Mutex<Redactor>,
    ) -> Result<SecretValue, String> {
        let value = self.source.fetch(name).await.map_err(|e| e.to_string())?;
        if value.expose().len() < MIN_SECRET_LEN {
            return Err(format!(
                "secret `{name}` is unavailable: shorter than {MIN_SECRET_LEN} characters, which cannot be redacted safely"
            ));
        }
        redactor.lock().expect("redactor").add(&value);
        Ok(value)
    }
}

#[cfg(test)]
mod inject_tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::egress::EgressScheme;

    struct Fixed;

    impl SecretSource for Fixed {
        fn fetch<'a>(&'a self, name: &'a str) -> FetchFuture<'a> {
            Box::pin(async move {
                match name {
                    "api" => Ok(SecretValue::new("value-of-the-api-secret".into())),
                    "short" => Ok(SecretValue::new("abc".into())),
                    _ => Err(SecretUnavailable {
                        name: name.into(),
                        reason: "not found in the secret store",
                    }),
                }
            })
        }
    }

    fn grant(name: &str, placement: Placement) -> SecretGrant {
        SecretGrant {
            bindings: vec![SecretBinding {
                name: name.into(),
                destinations: vec![EgressRule::parse("https://api.example.com", false).unwrap()],
                placement,
            }],
            source: Arc::new(Fixed),
        }
    }

    fn dest(host: &str) -> Destination {
        Destination {
            scheme: EgressScheme::Https,
            host: host.into(),
            port: 443,
            allow_private: false,
        }
    }

    fn bearer() -> Placement {
        Placement::Header {
            name: http::header::AUTHORIZATION,
            format: "Bearer {}".into(),
        }
    }

    #[tokio::test]
    async fn injects_only_for_the_bound_destination_and_remembers_the_value() {
        let grant = grant("api", bearer());
        let redactor = Mutex::new(Redactor::default());
        let mut bound = http::Request::get("https://api.example.com/v1")
            .body(())
            .unwrap();
        assert!(
            grant
                .inject(&dest("api.example.com"), &mut bound, &redactor)
                .await
                .unwrap()
        );
        assert_eq!(
            bound.headers()["authorization"],
            "Bearer value-of-the-api-secret"
        );
        assert_eq!(bound.headers()["accept-encoding"], "identity");
        let mut other = http::Request::get("https://other.example.com/")
            .body(())
            .unwrap();
        assert!(
            !grant
                .inject(&dest("other.example.com"), &mut other, &redactor)
                .await
                .unwrap()
        );
        assert!(other.headers().get("authorization").is_none());
        let scrubbed = redactor
            .lock()
            .unwrap()
            .redact("echo: value-of-the-api-secret");
        assert_eq!(scrubbed, "echo: [redacted]");
    }

    #[tokio::test]
    async fn places_query_secrets_percent_encoded() {
        let grant = grant(
            "api",
            Placement::Query {
                param: "key".into(),
            },
        );
        let redactor = Mutex::new(Redactor::default());
        let mut request = http::Request::get("https://api.example.com/v1?q=1")
            .body(())
            .unwrap();
        grant
            .inject(&dest("api.example.com"), &mut request, &redactor)
            .await
            .unwrap();
        assert_eq!(
            request.uri().query(),
            Some("q=1&key=value-of-the-api-secret")
        );
    }

    #[tokio::test]
    async fn refuses_misplaced_placeholders_and_unusable_values() {
        let redactor = Mutex::new(Redactor::default());
        let api = grant("api", bearer());
        let mut foreign = http::Request::get("https://other.example.com/")
            .header("x-key", "{{secret:api}}")
            .body(())
            .unwrap();
        let err = api
            .inject(&dest("other.example.com"), &mut foreign, &redactor)
            .await;
        assert!(err.unwrap_err().contains("not bound"));
        let mut in_url = http::Request::get("https://api.example.com/?k=%7B%7Bsecret:api%7D%7D")
            .body(())
            .unwrap();
        let err = api
            .inject(&dest("api.example.com"), &mut in_url, &redactor)
            .await;
        assert!(err.unwrap_err().contains("header values"));
        let short = grant("short", bearer());
        let mut request = http::Request::get("https://api.example.com/")
            .body(())
            .unwrap();
        let err = short
            .inject(&dest("api.example.com"), &mut request, &redactor)
            .await;
        assert!(err.unwrap_err().contains("cannot be redacted"));
        let missing = grant("gone", bearer());
        let err = missing
            .inject(&dest("api.example.com"), &mut request, &redactor)
            .await;
        let err = err.unwrap_err();
        assert!(err.contains("secret `gone` is unavailable") && !err.contains("value-of"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redactor(value: &str) -> Redactor {
        let mut r = Redactor::default();
        r.add(&SecretValue::new(value.into()));
        r
    }

    #[test]
    fn scrubs_the_value_in_every_common_encoding() {
        let value = "s3cr3t-t0ken/with+chars";
        let r = redactor(value);
        let encodings = [
            value.to_owned(),
            STANDARD.encode(value),
            URL_SAFE_NO_PAD.encode(value),
            hex::encode(value),
            hex::encode_upper(value),
            percent_encode(value),
        ];
        for encoded in encodings {
            let text = format!("before {encoded} after");
            let scrubbed = r.redact(&text);
            assert_eq!(scrubbed, format!("before {REDACTED} after"), "{encoded}");
            let bytes = r.redact_bytes(text.as_bytes());
            assert_eq!(bytes, scrubbed.as_bytes());
        }
    }

    #[test]
    fn values_never_print() {
        let value = SecretValue::new("hunter2hunter2".into());
        assert!(!format!("{value:?}").contains("hunter2"));
        assert!(!format!("{:?}", redactor("hunter2hunter2")).contains("hunter2"));
    }

    #[test]
    fn finds_placeholders() {
        assert_eq!(placeholder("api"), "{{secret:api}}");
        assert_eq!(
            placeholders_in("Bearer {{secret:api}} and {{secret:b}}"),
            vec!["api", "b"]
        );
        assert!(placeholders_in("Bearer x").is_empty());
        assert!(url_mentions_placeholder(
            "https://x/?q=%7B%7Bsecret:api%7D%7D"
        ));
        assert!(!url_mentions_placeholder("https://x/?q=secret"));
    }
}
