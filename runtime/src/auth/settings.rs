//! `[auth]` in `stockade.toml`: API keys and the OAuth issuer.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde::Deserialize;
use stockade_host_api::CallerIdentity;

use super::apikey::{self, ApiKey, ApiKeys};
use super::{Method, Principal};
use crate::config::ConfigError;
use crate::units::{parse_duration, parse_size};

/// `[auth]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    #[serde(default)]
    required_scopes: Vec<String>,
    max_token: Option<String>,
    #[serde(default)]
    api_keys: Vec<RawApiKey>,
    oauth: Option<RawOAuth>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApiKey {
    client: String,
    user: Option<String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    scopes: Vec<String>,
    sha256: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOAuth {
    issuer: String,
    jwks_uri: Option<String>,
    algorithms: Option<Vec<String>>,
    token_types: Option<Vec<String>>,
    #[serde(default = "default_groups_claim")]
    groups_claim: String,
    leeway: Option<String>,
    jwks_refresh: Option<String>,
    #[serde(default)]
    scopes_supported: Vec<String>,
    introspection_endpoint: Option<String>,
    introspection_client: Option<String>,
    introspection_secret_file: Option<PathBuf>,
}

fn default_groups_claim() -> String {
    "groups".into()
}

/// The OAuth issuer whose JWT access tokens are accepted.
#[derive(Debug, Clone)]
pub struct OAuthSettings {
    /// The exact `iss` of every token.
    pub issuer: String,
    /// Where the keys are, when not found through the issuer's metadata.
    pub jwks_uri: Option<String>,
    /// Signature algorithms accepted (asymmetric only).
    pub algorithms: Vec<Algorithm>,
    /// Accepted `typ` header values, lower case (empty: any).
    pub token_types: Vec<String>,
    /// The claim holding the caller's groups.
    pub groups_claim: String,
    /// Clock skew allowed on `exp`, `nbf` and `iat`.
    pub leeway: Duration,
    /// Shortest time between two fetches of the issuer's keys.
    pub jwks_refresh: Duration,
    /// Scopes listed in the protected-resource metadata.
    pub scopes_supported: Vec<String>,
    /// RFC 7662 introspection of opaque tokens, when configured.
    pub introspection: Option<IntrospectionSettings>,
}

/// Where and as whom opaque tokens are introspected.
#[derive(Debug, Clone)]
pub struct IntrospectionSettings {
    /// The issuer's introspection endpoint.
    pub endpoint: String,
    /// Stockade's client id at the issuer.
    pub client: String,
    /// The file holding Stockade's client secret (read at start).
    pub secret_file: PathBuf,
}

/// `[auth]`, checked.
#[derive(Debug, Clone, Default)]
pub struct AuthSettings {
    /// Scopes every caller must hold.
    pub required_scopes: Vec<String>,
    /// Longest bearer value read, in bytes.
    pub max_token: usize,
    /// Configured API keys.
    pub api_keys: ApiKeys,
    /// The OAuth issuer, when tokens are accepted.
    pub oauth: Option<OAuthSettings>,
}

/// The algorithms accepted when `oauth.algorithms` is not given.
const DEFAULT_ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::EdDSA,
];

impl RawAuth {
    /// Checks every value; errors name the key.
    pub fn check(
        self,
        base: &Path,
        invalid: &dyn Fn(&str, &str) -> ConfigError,
    ) -> Result<AuthSettings, ConfigError> {
        let max_token = match &self.max_token {
            None => 8 << 10,
            Some(text) => parse_size(text)
                .ok()
                .filter(|n| (512..=64 << 10).contains(n))
                .ok_or_else(|| invalid("auth.max_token", "a size from 512B to 64KiB"))?
                as usize,
        };
        let mut keys = Vec::new();
        for (index, raw) in self.api_keys.into_iter().enumerate() {
            let key = |field: &str| format!("auth.api_keys[{index}].{field}");
            let digest = apikey::parse_digest(&raw.sha256).ok_or_else(|| {
                invalid(
                    &key("sha256"),
                    "64 hex digits, as printed by `stockade apikey new`",
                )
            })?;
            if raw.client.trim().is_empty() {
                return Err(invalid(&key("client"), "a client name"));
            }
            if keys.iter().any(|k: &ApiKey| k.digest == digest) {
                return Err(invalid(&key("sha256"), "a digest no other key has"));
            }
            keys.push(ApiKey {
                digest,
                principal: Principal {
                    identity: CallerIdentity {
                        client: raw.client,
                        user: raw.user,
                        groups: raw.groups,
                        scopes: raw.scopes,
                        call_depth: 0,
                    },
                    method: Method::ApiKey,
                },
            });
        }
        let oauth = self
            .oauth
            .map(|raw| check_oauth(raw, base, invalid))
            .transpose()?;
        Ok(AuthSettings {
            required_scopes: self.required_scopes,
            max_token,
            api_keys: ApiKeys::new(keys),
            oauth,
        })
    }
}

fn check_oauth(
    raw: RawOAuth,
    base: &Path,
    invalid: &dyn Fn(&str, &str) -> ConfigError,
) -> Result<OAuthSettings, ConfigError> {
    let fetchable = |key: &str, url: &str| {
        super::jwt::check_fetchable(url).map_err(|_| {
            invalid(
                key,
                "an https:// URL (plain http only for a loopback address)",
            )
        })
    };
    let introspection = match (
        raw.introspection_endpoint,
        raw.introspection_client,
        raw.introspection_secret_file,
    ) {
        (None, None, None) => None,
        (Some(endpoint), Some(client), Some(secret_file)) => {
            fetchable("auth.oauth.introspection_endpoint", &endpoint)?;
            let secret_file = crate::config::readable(
                "auth.oauth.introspection_secret_file",
                base.join(secret_file),
                invalid,
            )?;
            Some(IntrospectionSettings {
                endpoint,
                client,
                secret_file,
            })
        }
        _ => {
            return Err(invalid(
                "auth.oauth.introspection_endpoint",
                "introspection_endpoint, introspection_client and introspection_secret_file together",
            ));
        }
    };
    fetchable("auth.oauth.issuer", &raw.issuer)?;
    if let Some(uri) = &raw.jwks_uri {
        fetchable("auth.oauth.jwks_uri", uri)?;
    }
    let algorithms = match raw.algorithms {
        None => DEFAULT_ALGORITHMS.to_vec(),
        Some(names) => {
            let mut algorithms = Vec::new();
            for name in &names {
                let algorithm = name
                    .parse::<Algorithm>()
                    .ok()
                    .filter(|a| {
                        !matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
                    })
                    .ok_or_else(|| {
                        invalid(
                            "auth.oauth.algorithms",
                            "asymmetric JWS algorithms (RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA); never none or HMAC",
                        )
                    })?;
                algorithms.push(algorithm);
            }
            if algorithms.is_empty() {
                return Err(invalid("auth.oauth.algorithms", "at least one algorithm"));
            }
            algorithms
        }
    };
    let duration = |key: &str, text: &Option<String>, default: u64, most: u64| match text {
        None => Ok(Duration::from_secs(default)),
        Some(text) => parse_duration(text)
            .ok()
            .filter(|d| d.as_secs() <= most)
            .ok_or_else(|| {
                invalid(
                    key,
                    &format!("a duration of at most {most}s, such as \"30s\""),
                )
            }),
    };
    Ok(OAuthSettings {
        issuer: raw.issuer,
        jwks_uri: raw.jwks_uri,
        algorithms,
        token_types: raw
            .token_types
            .unwrap_or_else(|| vec!["at+jwt".into(), "application/at+jwt".into()])
            .into_iter()
            .map(|t| t.to_ascii_lowercase())
            .collect(),
        groups_claim: raw.groups_claim,
        leeway: duration("auth.oauth.leeway", &raw.leeway, 30, 300)?,
        jwks_refresh: duration("auth.oauth.jwks_refresh", &raw.jwks_refresh, 30, 3600)?,
        scopes_supported: raw.scopes_supported,
        introspection,
    })
}
