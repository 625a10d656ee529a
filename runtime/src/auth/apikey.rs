//! API keys for service clients: long random keys, stored in config only
//! as SHA-256 digests, each bound to a client identity.
//!
//! A key carries 256 random bits, so a plain digest is as strong as a slow
//! password hash would be; a presented key is compared against every
//! stored digest in constant time.

use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::Principal;

/// Every key starts with this, so a bearer value is known to be a key
/// (and never tried as a JWT) without a lookup.
pub const KEY_PREFIX: &str = "stk_";

/// One configured key: the digest and the identity it stands for.
#[derive(Debug, Clone)]
pub struct ApiKey {
    /// SHA-256 of the whole key, prefix included.
    pub digest: [u8; 32],
    /// The identity a request with this key gets.
    pub principal: Principal,
}

/// The configured keys.
#[derive(Debug, Clone, Default)]
pub struct ApiKeys {
    keys: Vec<ApiKey>,
}

impl ApiKeys {
    /// Keys from config.
    pub fn new(keys: Vec<ApiKey>) -> Self {
        Self { keys }
    }

    /// Adds one key.
    pub fn add(&mut self, key: ApiKey) {
        self.keys.push(key);
    }

    /// Whether any key is configured.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The identity of `presented`, when it is one of the keys. Every
    /// stored digest is compared, whatever matches first.
    pub fn find(&self, presented: &str) -> Option<&Principal> {
        let digest = digest(presented);
        let mut found = None;
        for key in &self.keys {
            if bool::from(key.digest.ct_eq(&digest)) {
                found = Some(&key.principal);
            }
        }
        found
    }
}

/// SHA-256 of `key`.
pub fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Parses a digest as written in config (64 hex digits).
pub fn parse_digest(text: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(text).ok()?;
    bytes.try_into().ok()
}

/// A fresh key: the prefix and 32 random bytes, base64url.
pub fn generate() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(format!(
        "{KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(client: &str) -> Principal {
        Principal {
            identity: stockade_host_api::CallerIdentity {
                client: client.into(),
                ..Default::default()
            },
            method: super::super::Method::ApiKey,
        }
    }

    #[test]
    fn a_key_is_found_by_its_digest_only() {
        let key = generate().unwrap();
        let other = generate().unwrap();
        assert!(key.starts_with(KEY_PREFIX) && key.len() == KEY_PREFIX.len() + 43);
        assert_ne!(key, other);
        let keys = ApiKeys::new(vec![ApiKey {
            digest: parse_digest(&hex::encode(digest(&key))).unwrap(),
            principal: principal("ci"),
        }]);
        assert_eq!(
            keys.find(&key).map(|p| p.identity.client.as_str()),
            Some("ci")
        );
        assert!(keys.find(&other).is_none());
        assert!(keys.find(&key[..key.len() - 1]).is_none());
        assert!(parse_digest("abc").is_none());
    }
}
