//! Injection: a credential goes only where the operator's `[secrets.NAME]`
//! places it (one header, or one query parameter) and only toward its bound
//! destinations. The tool has no say: `{{secret:NAME}}` placeholders are
//! refused wherever they appear, a tool's own copy of the operator's header
//! or parameter is replaced, and headers that would change the response's
//! representation (byte ranges, transfer codings) are refused on requests
//! that carry a credential.

use http::{HeaderMap, Uri};

use super::redact::{Scrubber, hex_byte};
use super::{Placement, Redactor, SecretGrant, SecretValue};
use crate::egress::Destination;

/// Request headers that change how the response represents its content;
/// refused on a request that carries a credential, because they let a tool
/// fetch a reflected credential a few bytes at a time or in a coding the
/// scrubber cannot read.
pub const REPRESENTATION_HEADERS: &[&str] = &["range", "if-range", "te"];

/// What marks a placeholder, compared case-insensitively.
const PLACEHOLDER_MARK: &str = "{{secret:";

impl SecretGrant {
    /// Puts every secret bound to `dest` where its binding says, after
    /// refusing representation-changing headers. Each value injected is
    /// remembered by `redactor`. Returns whether anything was injected;
    /// refuses (naming the secret and the rule) when a value cannot be had
    /// or is too short to be scrubbed.
    pub(crate) async fn inject<B>(
        &self,
        dest: &Destination,
        request: &mut http::Request<B>,
        redactor: &Redactor,
    ) -> Result<bool, String> {
        let bound: Vec<_> = self.bindings.iter().filter(|b| b.binds(dest)).collect();
        let Some(first) = bound.first() else {
            return Ok(false);
        };
        for header in REPRESENTATION_HEADERS {
            if request.headers().contains_key(*header) {
                return Err(format!(
                    "egress denied: header `{header}` is not allowed on a request carrying secret `{}` \
                     (it changes the response's representation, which must stay readable for redaction)",
                    first.name
                ));
            }
        }
        for binding in bound {
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
                    redactor.remember(&value, value.expose());
                    // `insert` replaces every value the tool set under this name.
                    request.headers_mut().insert(name.clone(), header);
                }
                Placement::Query { param } => {
                    let sent = percent_encode(value.expose());
                    redactor.remember(&value, &sent);
                    let uri = with_query_param(request.uri(), param, &sent).ok_or_else(|| {
                        format!(
                            "egress denied: cannot place secret `{}` in the URL",
                            binding.name
                        )
                    })?;
                    *request.uri_mut() = uri;
                }
            }
        }
        Ok(true)
    }

    async fn value(&self, name: &str, redactor: &Redactor) -> Result<SecretValue, String> {
        let value = self.source.fetch(name).await.map_err(|e| e.to_string())?;
        let shortest = redactor.min_value_len();
        if value.expose().chars().count() < shortest {
            return Err(format!(
                "secret `{name}` is unavailable: shorter than {shortest} characters \
                 (twice the redaction run of {}), which cannot be redacted safely",
                redactor.min_run()
            ));
        }
        Ok(value)
    }
}

/// `uri` with every `param=` the tool wrote removed and `param=encoded`
/// appended.
fn with_query_param(uri: &Uri, param: &str, encoded: &str) -> Option<Uri> {
    let name = percent_encode(param);
    let mut pairs: Vec<&str> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|pair| {
            let key = pair.split('=').next().unwrap_or("");
            !pair.is_empty() && percent_decode_lower(key) != param.to_ascii_lowercase()
        })
        .collect();
    let ours = format!("{name}={encoded}");
    pairs.push(&ours);
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(format!("{}?{}", uri.path(), pairs.join("&")).parse().ok()?);
    Uri::from_parts(parts).ok()
}

/// Refuses a request that mentions a `{{secret:NAME}}` placeholder in its
/// URL, a header name or value, or its body (raw or percent-encoded, any
/// case): placeholders are never substituted.
pub(crate) fn refuse_placeholders(
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), String> {
    let refuse = |name: String, place: &str| {
        Err(format!(
            "egress denied: secret `{name}`: a placeholder in {place} is never substituted \
             (a credential goes only where the operator's [secrets.NAME] places it)"
        ))
    };
    if let Some(name) = placeholder_name(uri.to_string().as_bytes()) {
        return refuse(name, "the URL");
    }
    for (header, value) in headers {
        if let Some(name) = placeholder_name(header.as_str().as_bytes()) {
            return refuse(name, "a header name");
        }
        if let Some(name) = placeholder_name(value.as_bytes()) {
            return refuse(name, &format!("header `{header}`"));
        }
    }
    if let Some(name) = placeholder_name(body) {
        return refuse(name, "the request body");
    }
    Ok(())
}

/// Refuses a request whose URL, headers or body already hold a run of a
/// credential: the tool was never given one, so it is guessing or leaking.
pub(crate) fn refuse_credential_pieces(
    scrubber: &Scrubber,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), String> {
    if scrubber.is_empty() {
        return Ok(());
    }
    let header = || {
        headers.iter().find(|(name, value)| {
            scrubber.contains(name.as_str().as_bytes()) || scrubber.contains(value.as_bytes())
        })
    };
    let place = if scrubber.contains(uri.to_string().as_bytes()) {
        "its URL".to_owned()
    } else if let Some((name, _)) = header() {
        format!("header `{name}`")
    } else if scrubber.contains(body) {
        "its body".to_owned()
    } else {
        return Ok(());
    };
    Err(format!(
        "egress denied: the request carries a piece of a credential in {place} \
         (a tool never sends a credential itself)"
    ))
}

/// The secret named after the first placeholder mark in `text`, if any.
fn placeholder_name(text: &[u8]) -> Option<String> {
    let decoded = percent_decode_lower(&String::from_utf8_lossy(text));
    let at = decoded.find(PLACEHOLDER_MARK)?;
    let after = &decoded[at + PLACEHOLDER_MARK.len()..];
    let name: String = after
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .take(64)
        .collect();
    Some(if name.is_empty() { "?".into() } else { name })
}

/// Percent-decodes `text` (invalid escapes kept as they are) and folds
/// ASCII case.
fn percent_decode_lower(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let escaped = (bytes[at] == b'%')
            .then(|| hex_byte(bytes.get(at + 1..at + 3)))
            .flatten();
        match escaped {
            Some(byte) => {
                out.push(byte);
                at += 3;
            }
            None => {
                out.push(bytes[at]);
                at += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).to_ascii_lowercase()
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode(text: &str) -> String {
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::egress::{EgressRule, EgressScheme};
    use crate::secrets::{FetchFuture, SecretBinding, SecretSource, SecretUnavailable};

    const API_VALUE: &str = "value-of-the-api-secret";

    struct Fixed;

    impl SecretSource for Fixed {
        fn fetch<'a>(&'a self, name: &'a str) -> FetchFuture<'a> {
            Box::pin(async move {
                match name {
                    "api" => Ok(SecretValue::new(API_VALUE.into())),
                    "short" => Ok(SecretValue::new("abcdefghij".into())),
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
    async fn injects_only_for_the_bound_destination_replacing_the_tools_own_header() {
        let grant = grant("api", bearer());
        let redactor = Redactor::default();
        let mut bound = http::Request::get("https://api.example.com/v1")
            .header("authorization", "Basic dG9vbDpjaG9zZW4=")
            .header("authorization", "second")
            .body(())
            .unwrap();
        let dest_bound = dest("api.example.com");
        assert!(
            grant
                .inject(&dest_bound, &mut bound, &redactor)
                .await
                .unwrap()
        );
        let values: Vec<_> = bound.headers().get_all("authorization").iter().collect();
        assert_eq!(values, [format!("Bearer {API_VALUE}").as_str()]);
        let mut other = http::Request::get("https://other.example.com/")
            .body(())
            .unwrap();
        let dest_other = dest("other.example.com");
        assert!(
            !grant
                .inject(&dest_other, &mut other, &redactor)
                .await
                .unwrap()
        );
        assert!(other.headers().get("authorization").is_none());
        let scrubbed = redactor
            .scrubber()
            .scrub_text(&format!("echo: {API_VALUE}"));
        assert_eq!(scrubbed, "echo: [redacted]");
    }

    #[tokio::test]
    async fn places_query_secrets_replacing_the_tools_own_parameter() {
        let grant = grant(
            "api",
            Placement::Query {
                param: "key".into(),
            },
        );
        let redactor = Redactor::default();
        let mut request = http::Request::get("https://api.example.com/v1?q=1&KEY=mine&k%65y=also")
            .body(())
            .unwrap();
        let dest = dest("api.example.com");
        grant.inject(&dest, &mut request, &redactor).await.unwrap();
        assert_eq!(
            request.uri().query(),
            Some(&*format!("q=1&key={API_VALUE}"))
        );
    }

    #[tokio::test]
    async fn refuses_representation_headers_and_short_or_missing_values() {
        let redactor = Redactor::default();
        let api = grant("api", bearer());
        let dest = dest("api.example.com");
        for header in REPRESENTATION_HEADERS {
            let mut request = http::Request::get("https://api.example.com/")
                .header(*header, "bytes=0-3")
                .body(())
                .unwrap();
            let err = api
                .inject(&dest, &mut request, &redactor)
                .await
                .unwrap_err();
            assert!(
                err.contains(header) && err.contains("secret `api`"),
                "{err}"
            );
        }
        let mut request = http::Request::get("https://api.example.com/")
            .body(())
            .unwrap();
        let short = grant("short", bearer());
        let err = short
            .inject(&dest, &mut request, &redactor)
            .await
            .unwrap_err();
        assert!(err.contains("cannot be redacted"), "{err}");
        let missing = grant("gone", bearer());
        let err = missing
            .inject(&dest, &mut request, &redactor)
            .await
            .unwrap_err();
        assert!(err.contains("secret `gone` is unavailable") && !err.contains("value-of"));
    }

    #[test]
    fn refuses_placeholders_anywhere() {
        let headers = |name: &str, value: &str| {
            let mut map = HeaderMap::new();
            map.insert(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
            map
        };
        let plain: Uri = "https://api.example.com/".parse().unwrap();
        let cases = [
            (
                "https://api.example.com/?k=%7B%7Bsecret:api%7D%7D"
                    .parse()
                    .unwrap(),
                HeaderMap::new(),
                &b""[..],
                "the URL",
            ),
            (
                "https://api.example.com/%7b%7bSECRET:api%7d%7d"
                    .parse()
                    .unwrap(),
                HeaderMap::new(),
                &b""[..],
                "the URL",
            ),
            (
                plain.clone(),
                headers("x-stolen", "Bearer {{secret:api}}"),
                &b""[..],
                "header `x-stolen`",
            ),
            (
                plain.clone(),
                HeaderMap::new(),
                &b"token={{Secret:api}}"[..],
                "the request body",
            ),
        ];
        for (uri, headers, body, place) in cases {
            let err = refuse_placeholders(&uri, &headers, body).unwrap_err();
            assert!(err.contains("secret `api`") && err.contains(place), "{err}");
        }
        assert!(refuse_placeholders(&plain, &headers("x-ok", "{{other}}"), b"{}").is_ok());
    }

    #[test]
    fn refuses_a_request_carrying_a_piece_of_a_known_value() {
        let redactor = Redactor::default();
        redactor.remember(&SecretValue::new(API_VALUE.into()), API_VALUE);
        let scrubber = redactor.scrubber();
        let uri: Uri = "https://sink.example.com/?q=of-the-api".parse().unwrap();
        let err = refuse_credential_pieces(&scrubber, &uri, &HeaderMap::new(), b"").unwrap_err();
        assert!(err.contains("URL"), "{err}");
        let plain: Uri = "https://sink.example.com/".parse().unwrap();
        let hex = hex::encode(&API_VALUE[3..15]);
        let err = refuse_credential_pieces(&scrubber, &plain, &HeaderMap::new(), hex.as_bytes())
            .unwrap_err();
        assert!(err.contains("body"), "{err}");
        assert!(refuse_credential_pieces(&scrubber, &plain, &HeaderMap::new(), b"value").is_ok());
    }
}
