//! Opaque access tokens, checked through the issuer's RFC 7662
//! introspection endpoint: the token must be active, from the configured
//! issuer, meant for this server and not expired. Answers for active
//! tokens are remembered until the token expires; at most
//! [`MAX_AT_ONCE`] introspection requests run at once.

use std::time::Duration;

use super::jwt::{self, Claims, TokenRefusal};
use super::settings::IntrospectionSettings;
use super::verified::VerifiedTokens;

/// Introspection requests to the issuer in flight at once.
const MAX_AT_ONCE: usize = 16;

/// Checks opaque tokens with the issuer.
pub struct Introspector {
    endpoint: String,
    client: String,
    /// Stockade's client secret at the issuer (read from its file at start).
    secret: String,
    issuer: String,
    audience: String,
    leeway: i64,
    http: reqwest::Client,
    at_once: tokio::sync::Semaphore,
    verified: VerifiedTokens,
}

impl Introspector {
    /// An introspector for tokens from `issuer` meant for `audience`.
    pub fn new(
        settings: &IntrospectionSettings,
        issuer: &str,
        audience: &str,
        leeway: Duration,
    ) -> Result<Self, String> {
        let secret = std::fs::read_to_string(&settings.secret_file)
            .map_err(|err| format!("{}: {err}", settings.secret_file.display()))?
            .trim()
            .to_owned();
        let http = jwt::issuer_client()?;
        Ok(Self {
            endpoint: settings.endpoint.clone(),
            client: settings.client.clone(),
            secret,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            leeway: leeway.as_secs() as i64,
            http,
            at_once: tokio::sync::Semaphore::new(MAX_AT_ONCE),
            verified: VerifiedTokens::default(),
        })
    }

    /// The claims of an active opaque `token` meant for this server.
    pub async fn verify(&self, token: &str) -> Result<Claims, TokenRefusal> {
        self.verified
            .get_or_check(token, self.leeway, self.introspect(token))
            .await
    }

    /// Asks the issuer about `token` and judges its answer.
    async fn introspect(&self, token: &str) -> Result<Claims, TokenRefusal> {
        let answer = {
            let _turn = self
                .at_once
                .acquire()
                .await
                .map_err(|_| TokenRefusal::Keys("introspection closed".into()))?;
            let response = self
                .http
                .post(&self.endpoint)
                .basic_auth(&self.client, Some(&self.secret))
                .header("accept", "application/json")
                .form(&[("token", token), ("token_type_hint", "access_token")])
                .send()
                .await
                .map_err(|err| TokenRefusal::Keys(format!("{}: {err}", self.endpoint)))?;
            jwt::read_json(response, &self.endpoint)
                .await
                .map_err(TokenRefusal::Keys)?
        };
        self.judge(answer)
    }

    /// The claims of an introspection answer that says the token may be
    /// used here.
    fn judge(&self, answer: serde_json::Value) -> Result<Claims, TokenRefusal> {
        let invalid = |why: &str| Err(TokenRefusal::Invalid(format!("introspection: {why}")));
        if answer.get("active") != Some(&serde_json::Value::Bool(true)) {
            return invalid("the token is not active");
        }
        if answer
            .get("iss")
            .is_some_and(|iss| iss.as_str() != Some(self.issuer.as_str()))
        {
            return invalid("issued by another issuer");
        }
        let meant_here = match answer.get("aud") {
            Some(serde_json::Value::String(aud)) => *aud == self.audience,
            Some(serde_json::Value::Array(auds)) => {
                auds.iter().any(|a| a.as_str() == Some(&self.audience))
            }
            _ => false,
        };
        if !meant_here {
            return invalid("not meant for this server (aud)");
        }
        let claims: Claims = serde_json::from_value(answer)
            .map_err(|err| TokenRefusal::Invalid(format!("introspection: {err}")))?;
        match claims.exp {
            None => invalid("no expiry"),
            Some(_) if !claims.live(self.leeway) => invalid("expired"),
            Some(_) => Ok(claims),
        }
    }
}
