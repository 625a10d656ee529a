//! Authentication of HTTP requests: who is calling, from an API key or an
//! OAuth 2.1 bearer JWT, and the answers a resource server gives when
//! nobody is (RFC 6750 challenges, RFC 9728 metadata).
//!
//! Nothing here knows about tools: a refusal says nothing of what is
//! served. The bearer value itself is never logged or passed on.

pub mod apikey;
pub mod introspect;
pub mod jwt;
pub mod settings;
pub mod verified;

use http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use stockade_host_api::CallerIdentity;

use self::jwt::{Claims, JwtVerifier};
pub use self::settings::{AuthSettings, RawAuth};

/// How a caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// A configured API key.
    ApiKey,
    /// A JWT access token from the OAuth issuer.
    Jwt,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Who: client, user, groups and scopes (call depth 0: the request
    /// fills in its own).
    pub identity: CallerIdentity,
    /// How it was proved.
    pub method: Method,
}

impl Principal {
    /// The caller identity of one request at `call_depth`.
    pub fn caller(&self, call_depth: u32) -> CallerIdentity {
        CallerIdentity {
            call_depth,
            ..self.identity.clone()
        }
    }
}

/// Why a request was not authenticated.
#[derive(Debug, thiserror::Error)]
pub enum AuthFailure {
    /// No credentials at all.
    #[error("no credentials")]
    Missing,
    /// Credentials in a form never accepted (two Authorization headers,
    /// a token in the query string, another scheme).
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// A credential that is not valid; the reason is for the log only.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// Valid, but without a scope every caller needs.
    #[error("insufficient scope: needs {0}")]
    InsufficientScope(String),
}

impl AuthFailure {
    /// The audit's error class of this failure.
    pub fn class(&self) -> &'static str {
        match self {
            Self::Missing => "no_credentials",
            Self::BadRequest(_) => "bad_request",
            Self::Invalid(_) => "invalid_token",
            Self::InsufficientScope(_) => "insufficient_scope",
        }
    }
}

/// Checks credentials on every request.
pub struct Authenticator {
    settings: AuthSettings,
    jwt: Option<JwtVerifier>,
    introspector: Option<introspect::Introspector>,
    /// This server's canonical resource URI (the audience of its tokens).
    resource: String,
    /// Where the protected-resource metadata is served.
    metadata_url: String,
}

impl Authenticator {
    /// An authenticator for the resource `resource`, whose metadata is at
    /// `metadata_url`.
    pub fn new(
        settings: AuthSettings,
        resource: String,
        metadata_url: String,
    ) -> Result<Self, String> {
        let jwt = settings
            .oauth
            .clone()
            .map(|oauth| JwtVerifier::new(oauth, resource.clone()))
            .transpose()?;
        let introspector = settings
            .oauth
            .as_ref()
            .and_then(|oauth| {
                oauth.introspection.as_ref().map(|introspection| {
                    introspect::Introspector::new(
                        introspection,
                        &oauth.issuer,
                        &resource,
                        oauth.leeway,
                    )
                })
            })
            .transpose()?;
        Ok(Self {
            settings,
            jwt,
            introspector,
            resource,
            metadata_url,
        })
    }

    /// Whether any way to authenticate is configured.
    pub fn is_configured(&self) -> bool {
        self.jwt.is_some() || !self.settings.api_keys.is_empty()
    }

    /// Fetches the issuer's keys ahead of the first request.
    pub async fn prefetch(&self) {
        if let Some(jwt) = &self.jwt {
            jwt.prefetch().await;
        }
    }

    /// The caller behind a request with `headers` and `uri`.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        uri: &Uri,
    ) -> Result<Principal, AuthFailure> {
        if uri.query().is_some_and(carries_token) {
            return Err(AuthFailure::BadRequest(
                "access tokens are accepted only in the Authorization header",
            ));
        }
        let mut values = headers.get_all(header::AUTHORIZATION).iter();
        let Some(value) = values.next() else {
            return Err(AuthFailure::Missing);
        };
        if values.next().is_some() {
            return Err(AuthFailure::BadRequest(
                "more than one Authorization header",
            ));
        }
        if value.len() > self.settings.max_token + "Bearer ".len() {
            return Err(AuthFailure::Invalid(
                "token larger than auth.max_token".into(),
            ));
        }
        let value = value
            .to_str()
            .map_err(|_| AuthFailure::Invalid("not ASCII".into()))?;
        let token = match value.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => {
                return Err(AuthFailure::BadRequest(
                    "only the Bearer scheme is accepted",
                ));
            }
        };
        let principal = if token.starts_with(apikey::KEY_PREFIX) {
            self.settings
                .api_keys
                .find(token)
                .cloned()
                .ok_or_else(|| AuthFailure::Invalid("unknown API key".into()))?
        } else {
            let checked = match (&self.introspector, &self.jwt) {
                (Some(introspector), _) if !looks_like_jwt(token) => {
                    introspector.verify(token).await
                }
                (_, Some(jwt)) => jwt.verify(token).await,
                _ => {
                    return Err(AuthFailure::Invalid(
                        "not an API key, and no OAuth issuer is configured".into(),
                    ));
                }
            };
            let claims = checked.map_err(|refusal| AuthFailure::Invalid(refusal.to_string()))?;
            self.principal_of(claims)?
        };
        if let Some(missing) = self
            .settings
            .required_scopes
            .iter()
            .find(|scope| !principal.identity.scopes.contains(scope))
        {
            return Err(AuthFailure::InsufficientScope(missing.clone()));
        }
        Ok(principal)
    }

    fn principal_of(&self, claims: Claims) -> Result<Principal, AuthFailure> {
        let oauth = self
            .settings
            .oauth
            .as_ref()
            .expect("a verifier has settings");
        let client = claims
            .client_id
            .or(claims.azp)
            .or_else(|| claims.sub.clone())
            .ok_or_else(|| AuthFailure::Invalid("no client_id, azp or sub claim".into()))?;
        let scopes = match claims.rest.get("scope").or_else(|| claims.rest.get("scp")) {
            Some(value) => strings(value),
            None => Vec::new(),
        };
        let groups = claims
            .rest
            .get(&oauth.groups_claim)
            .map(strings)
            .unwrap_or_default();
        Ok(Principal {
            identity: CallerIdentity {
                client,
                user: claims.sub,
                groups,
                scopes,
                call_depth: 0,
            },
            method: Method::Jwt,
        })
    }

    /// The HTTP answer to `failure`: 400, 401 with a challenge that points
    /// at the metadata, or 403 naming the missing scope. The body names no
    /// tool and no detail of the token.
    pub fn refusal(&self, failure: &AuthFailure) -> http::Response<String> {
        let mut challenge = format!("Bearer resource_metadata=\"{}\"", self.metadata_url);
        // The scopes to ask for: those every caller needs, else those the
        // tools are gated on (the issuer's list in the metadata).
        let hint = match (&failure, self.settings.oauth.as_ref()) {
            (AuthFailure::InsufficientScope(missing), _) => vec![missing.clone()],
            _ if !self.settings.required_scopes.is_empty() => self.settings.required_scopes.clone(),
            (_, Some(oauth)) => oauth.scopes_supported.clone(),
            (_, None) => Vec::new(),
        };
        if !hint.is_empty() {
            challenge.push_str(&format!(", scope=\"{}\"", hint.join(" ")));
        }
        let (status, error, description) = match failure {
            AuthFailure::Missing => (StatusCode::UNAUTHORIZED, None, "authentication required"),
            AuthFailure::BadRequest(why) => {
                (StatusCode::BAD_REQUEST, Some("invalid_request"), *why)
            }
            AuthFailure::Invalid(_) => (
                StatusCode::UNAUTHORIZED,
                Some("invalid_token"),
                "the access token is invalid, expired or not meant for this server",
            ),
            AuthFailure::InsufficientScope(_) => (
                StatusCode::FORBIDDEN,
                Some("insufficient_scope"),
                "the access token lacks a required scope",
            ),
        };
        if let Some(error) = error {
            challenge.push_str(&format!(", error=\"{error}\""));
        }
        let body = serde_json::json!({
            "error": error.unwrap_or("unauthorized"),
            "error_description": description,
        })
        .to_string();
        let mut response = http::Response::new(body);
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            headers.insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }

    /// The RFC 9728 protected-resource metadata.
    pub fn metadata(&self) -> serde_json::Value {
        let mut metadata = serde_json::json!({
            "resource": self.resource,
            "bearer_methods_supported": ["header"],
            "resource_name": "Stockade",
        });
        if let Some(oauth) = &self.settings.oauth {
            metadata["authorization_servers"] = serde_json::json!([oauth.issuer]);
            let mut scopes = oauth.scopes_supported.clone();
            for scope in &self.settings.required_scopes {
                if !scopes.contains(scope) {
                    scopes.push(scope.clone());
                }
            }
            metadata["scopes_supported"] = serde_json::json!(scopes);
            metadata["resource_signing_alg_values_supported"] = serde_json::json!(
                oauth
                    .algorithms
                    .iter()
                    .map(|a| format!("{a:?}"))
                    .collect::<Vec<_>>()
            );
        }
        metadata
    }
}

/// Whether `token` has the shape of a JWS (three dot-separated parts);
/// anything else is opaque.
fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3
}

/// Whether a query string carries a token (`access_token=`), which is
/// refused rather than ignored so a client learns its mistake.
fn carries_token(query: &str) -> bool {
    query.split('&').any(|pair| {
        pair.split('=')
            .next()
            .is_some_and(|k| k.eq_ignore_ascii_case("access_token"))
    })
}

/// A claim as a list of strings: an array of strings, or one string of
/// space-separated words.
fn strings(value: &serde_json::Value) -> Vec<String> {
    match value {
        serde_json::Value::String(text) => text.split_whitespace().map(str::to_owned).collect(),
        serde_json::Value::Array(items) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}
