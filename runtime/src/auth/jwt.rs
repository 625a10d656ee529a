//! OAuth 2.1 bearer JWTs: signature against the issuer's published keys,
//! then every claim a resource server must check.
//!
//! Keys come from the issuer's metadata (RFC 8414, then OIDC discovery),
//! fetched over https (plain http only for a loopback issuer), cached, and
//! fetched again when a token names a key id the cache lacks, at most once
//! per `oauth.jwks_refresh` however many such tokens arrive. Nothing in a
//! token's header (`jku`, `x5u`, `jwk`, `x5c`) is ever fetched or trusted.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::settings::OAuthSettings;
use super::verified::VerifiedTokens;

/// Largest metadata or key-set document read from the issuer.
const MAX_DOCUMENT: usize = 1 << 20;

/// Why a token was refused. The text goes to the log, never to the client.
#[derive(Debug, thiserror::Error)]
pub enum TokenRefusal {
    /// The token is not a well-formed JWS.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// Its header names an algorithm outside `oauth.algorithms`.
    #[error("algorithm {0} is not in oauth.algorithms")]
    Algorithm(String),
    /// Its header carries `crit` extensions.
    #[error("critical header extensions are not supported")]
    Critical,
    /// Its type is not an access token's.
    #[error("token type {0:?} is not in oauth.token_types")]
    Type(Option<String>),
    /// No published key has its key id.
    #[error("no key of the issuer has id {0:?}")]
    UnknownKey(Option<String>),
    /// The key's type does not fit the algorithm.
    #[error("key {0:?} cannot verify {1:?}")]
    KeyMismatch(Option<String>, Algorithm),
    /// The issuer's keys could not be fetched.
    #[error("cannot fetch the issuer's keys: {0}")]
    Keys(String),
    /// Signature or a registered claim failed (jsonwebtoken's reason).
    #[error("{0}")]
    Invalid(String),
    /// `iat` is later than now plus the allowed skew.
    #[error("issued in the future")]
    IssuedInFuture,
}

/// The claims a caller's identity is read from.
#[derive(Debug, Clone, Deserialize)]
pub struct Claims {
    /// The subject: the user (or the client, for client credentials).
    pub sub: Option<String>,
    /// The client the token was issued to (RFC 9068 `client_id`).
    pub client_id: Option<String>,
    /// The authorized party, some issuers' name for the client.
    pub azp: Option<String>,
    /// Issued-at, seconds since the epoch.
    pub iat: Option<i64>,
    /// Expiry, seconds since the epoch (required; checked by jsonwebtoken).
    pub exp: Option<f64>,
    /// Every other claim, for the groups and scope claims.
    #[serde(flatten)]
    pub rest: serde_json::Map<String, serde_json::Value>,
}

impl Claims {
    /// Whether the token has an expiry that is still ahead, allowing
    /// `leeway` seconds of clock skew.
    pub fn live(&self, leeway: i64) -> bool {
        let now = jsonwebtoken::get_current_timestamp() as i64;
        self.exp.is_some_and(|exp| exp as i64 + leeway > now)
    }
}

/// One usable published key.
struct PublishedKey {
    key: DecodingKey,
    /// The algorithm the key is pinned to, when the key set says so.
    algorithm: Option<Algorithm>,
}

/// The issuer's keys as last fetched.
#[derive(Default)]
struct KeyCache {
    jwks_uri: Option<String>,
    keys: HashMap<Option<String>, PublishedKey>,
    fetched_at: Option<Instant>,
}

/// Verifies access tokens from one issuer.
pub struct JwtVerifier {
    settings: OAuthSettings,
    /// The audience a token must name: this server's resource URI.
    audience: String,
    http: reqwest::Client,
    cache: tokio::sync::RwLock<KeyCache>,
    /// Held while the keys are fetched, so one fetch serves every waiter.
    fetching: tokio::sync::Mutex<()>,
    /// Tokens that passed, until they expire; cleared whenever the
    /// issuer's keys change.
    verified: VerifiedTokens,
}

impl JwtVerifier {
    /// A verifier for `settings`, whose tokens must name `audience`.
    pub fn new(settings: OAuthSettings, audience: String) -> Result<Self, String> {
        let http = issuer_client()?;
        Ok(Self {
            settings,
            audience,
            http,
            cache: tokio::sync::RwLock::new(KeyCache::default()),
            fetching: tokio::sync::Mutex::new(()),
            verified: VerifiedTokens::default(),
        })
    }

    /// Fetches the keys now (at start, so a misconfigured issuer is
    /// logged at once rather than at the first request).
    pub async fn prefetch(&self) {
        if let Err(err) = self.refresh(None).await {
            tracing::warn!(target: "stockade::auth", issuer = %self.settings.issuer, "{err}");
        }
    }

    /// The claims of `token`, once its signature and every registered
    /// claim have passed (now, or earlier with the same keys and the token
    /// not yet expired).
    pub async fn verify(&self, token: &str) -> Result<Claims, TokenRefusal> {
        let leeway = self.settings.leeway.as_secs() as i64;
        self.verified
            .get_or_check(token, leeway, self.check(token))
            .await
    }

    /// Every check of `token`, from its header to its claims.
    async fn check(&self, token: &str) -> Result<Claims, TokenRefusal> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|err| TokenRefusal::Malformed(err.to_string()))?;
        if !self.settings.algorithms.contains(&header.alg) {
            return Err(TokenRefusal::Algorithm(format!("{:?}", header.alg)));
        }
        if header.crit.is_some() {
            return Err(TokenRefusal::Critical);
        }
        let token_type = header.typ.as_deref().map(str::to_ascii_lowercase);
        if !self.settings.token_types.is_empty()
            && !token_type
                .as_deref()
                .is_some_and(|t| self.settings.token_types.iter().any(|want| want == t))
        {
            return Err(TokenRefusal::Type(header.typ));
        }
        let kid = header.kid.clone();
        if !self.has_key(&kid).await {
            self.refresh(Some(&kid)).await?;
        }
        let cache = self.cache.read().await;
        let published = cache
            .keys
            .get(&kid)
            .ok_or_else(|| TokenRefusal::UnknownKey(kid.clone()))?;
        if published
            .algorithm
            .is_some_and(|pinned| pinned != header.alg)
            || published.key.family() != header.alg.family()
        {
            return Err(TokenRefusal::KeyMismatch(kid, header.alg));
        }
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = self.settings.leeway.as_secs();
        let data = jsonwebtoken::decode::<Claims>(token, &published.key, &validation)
            .map_err(|err| TokenRefusal::Invalid(err.to_string()))?;
        let now = jsonwebtoken::get_current_timestamp() as i64;
        if data
            .claims
            .iat
            .is_some_and(|iat| iat > now + self.settings.leeway.as_secs() as i64)
        {
            return Err(TokenRefusal::IssuedInFuture);
        }
        Ok(data.claims)
    }

    async fn has_key(&self, kid: &Option<String>) -> bool {
        self.cache.read().await.keys.contains_key(kid)
    }

    /// Fetches the key set again unless another fetch just did (or, when
    /// `wanted` is given, already brought that key).
    async fn refresh(&self, wanted: Option<&Option<String>>) -> Result<(), TokenRefusal> {
        let _one_at_a_time = self.fetching.lock().await;
        {
            let cache = self.cache.read().await;
            if wanted.is_some_and(|kid| cache.keys.contains_key(kid)) {
                return Ok(());
            }
            if cache
                .fetched_at
                .is_some_and(|at| at.elapsed() < self.settings.jwks_refresh)
            {
                return Err(TokenRefusal::UnknownKey(wanted.cloned().flatten()));
            }
        }
        // A failed attempt counts too: an issuer that is down is not
        // asked again on every request.
        let known_uri = {
            let mut cache = self.cache.write().await;
            cache.fetched_at = Some(Instant::now());
            cache.jwks_uri.clone()
        };
        let jwks_uri = match known_uri {
            Some(uri) => uri,
            None => self.discover().await?,
        };
        let fetched = self.fetch_keys(&jwks_uri).await?;
        let mut cache = self.cache.write().await;
        cache.jwks_uri = Some(jwks_uri);
        cache.keys = fetched;
        // A key that is gone must not keep vouching for its tokens.
        self.verified.clear();
        tracing::info!(target: "stockade::auth", keys = cache.keys.len(), "issuer keys fetched");
        Ok(())
    }

    /// The `jwks_uri` from configuration or the issuer's metadata, whose
    /// `issuer` must be exactly the configured one.
    async fn discover(&self) -> Result<String, TokenRefusal> {
        if let Some(uri) = &self.settings.jwks_uri {
            return Ok(uri.clone());
        }
        let issuer = self.settings.issuer.trim_end_matches('/');
        let (origin, path) = split_origin(issuer);
        let candidates = [
            format!("{origin}/.well-known/oauth-authorization-server{path}"),
            format!("{issuer}/.well-known/openid-configuration"),
        ];
        let mut last_error = String::new();
        for url in candidates {
            match self.get_json(&url).await {
                Ok(doc) => {
                    if doc.get("issuer").and_then(|v| v.as_str()) != Some(&self.settings.issuer) {
                        last_error =
                            format!("{url}: `issuer` is not exactly {}", self.settings.issuer);
                        continue;
                    }
                    let uri = doc
                        .get("jwks_uri")
                        .and_then(|v| v.as_str())
                        .ok_or_else(|| TokenRefusal::Keys(format!("{url}: no jwks_uri")))?;
                    check_fetchable(uri).map_err(TokenRefusal::Keys)?;
                    return Ok(uri.to_owned());
                }
                Err(err) => last_error = err,
            }
        }
        Err(TokenRefusal::Keys(last_error))
    }

    async fn fetch_keys(
        &self,
        uri: &str,
    ) -> Result<HashMap<Option<String>, PublishedKey>, TokenRefusal> {
        let doc = self.get_json(uri).await.map_err(TokenRefusal::Keys)?;
        let entries = doc
            .get("keys")
            .and_then(|k| k.as_array())
            .ok_or_else(|| TokenRefusal::Keys(format!("{uri}: no `keys` array")))?;
        let mut keys = HashMap::new();
        for entry in entries {
            // A key this server cannot use (a symmetric one, an unknown
            // type, one meant for encryption) is skipped, not fatal.
            let Ok(jwk) = serde_json::from_value::<Jwk>(entry.clone()) else {
                continue;
            };
            if matches!(
                jwk.common.public_key_use,
                Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
            ) || matches!(
                jwk.algorithm,
                jsonwebtoken::jwk::AlgorithmParameters::OctetKey(_)
            ) {
                continue;
            }
            let Ok(key) = DecodingKey::from_jwk(&jwk) else {
                continue;
            };
            let algorithm = jwk
                .common
                .key_algorithm
                .and_then(|a| Algorithm::try_from(a).ok());
            keys.insert(jwk.common.key_id.clone(), PublishedKey { key, algorithm });
        }
        if keys.is_empty() {
            return Err(TokenRefusal::Keys(format!("{uri}: no usable signing key")));
        }
        Ok(keys)
    }

    async fn get_json(&self, url: &str) -> Result<serde_json::Value, String> {
        check_fetchable(url)?;
        let response = self
            .http
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|err| format!("{url}: {err}"))?;
        read_json(response, url).await
    }
}

/// The client Stockade talks to the issuer with: no redirects followed, no
/// proxy from the environment, five seconds per request.
pub fn issuer_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|err| format!("cannot build the HTTP client for the OAuth issuer: {err}"))
}

/// The JSON body of a successful answer from the issuer, read up to
/// [`MAX_DOCUMENT`] bytes.
pub async fn read_json(
    mut response: reqwest::Response,
    url: &str,
) -> Result<serde_json::Value, String> {
    if !response.status().is_success() {
        return Err(format!("{url}: HTTP {}", response.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|err| format!("{url}: {err}"))?
    {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_DOCUMENT {
            return Err(format!("{url}: larger than {MAX_DOCUMENT} bytes"));
        }
    }
    serde_json::from_slice(&body).map_err(|err| format!("{url}: not JSON: {err}"))
}

/// `https://host/a/b` as (`https://host`, `/a/b`).
fn split_origin(url: &str) -> (&str, &str) {
    let after_scheme = url.find("://").map_or(0, |at| at + 3);
    match url[after_scheme..].find('/') {
        Some(at) => url.split_at(after_scheme + at),
        None => (url, ""),
    }
}

/// Whether `url` may be fetched for keys: https, or http to loopback.
pub fn check_fetchable(url: &str) -> Result<(), String> {
    let uri: http::Uri = url.parse().map_err(|_| format!("{url}: not a URL"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("https"), Some(_)) => Ok(()),
        (Some("http"), Some("127.0.0.1" | "localhost" | "[::1]")) => Ok(()),
        _ => Err(format!(
            "{url}: keys and metadata are fetched over https only (plain http only from a loopback address)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_urls_insert_the_well_known_path_before_the_issuer_path() {
        assert_eq!(
            split_origin("https://as.example/tenant/a"),
            ("https://as.example", "/tenant/a")
        );
        assert_eq!(
            split_origin("https://as.example"),
            ("https://as.example", "")
        );
        assert!(check_fetchable("http://127.0.0.1:9/jwks").is_ok());
        assert!(check_fetchable("http://as.example/jwks").is_err());
        assert!(check_fetchable("file:///etc/passwd").is_err());
        assert!(check_fetchable("https://as.example/jwks").is_ok());
    }
}
