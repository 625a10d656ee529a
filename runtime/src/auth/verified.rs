//! Tokens that passed every check, remembered until they expire: a client
//! presents the same token on every request, and checking one costs a
//! signature verification or a round trip to the issuer.

use std::collections::HashMap;
use std::sync::Mutex;

use sha2::{Digest as _, Sha256};

use super::jwt::{Claims, TokenRefusal};

/// Tokens remembered at most; past this the memory is cleared.
const CAPACITY: usize = 4096;

/// Checked tokens by SHA-256 of the whole token, with their claims.
#[derive(Default)]
pub struct VerifiedTokens {
    tokens: Mutex<HashMap<[u8; 32], Claims>>,
}

impl VerifiedTokens {
    /// The claims of `token`: remembered ones while they are `live`
    /// (allowing `leeway` seconds, as the first check did); otherwise
    /// those `check` finds, remembered if it passes.
    pub async fn get_or_check(
        &self,
        token: &str,
        leeway: i64,
        check: impl Future<Output = Result<Claims, TokenRefusal>>,
    ) -> Result<Claims, TokenRefusal> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let remembered = self.lock().get(&key).filter(|c| c.live(leeway)).cloned();
        if let Some(claims) = remembered {
            return Ok(claims);
        }
        let claims = check.await?;
        let mut tokens = self.lock();
        if tokens.len() >= CAPACITY {
            tokens.clear();
        }
        tokens.insert(key, claims.clone());
        Ok(claims)
    }

    /// Forgets every token (the keys that vouched for them changed).
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Claims>> {
        self.tokens.lock().unwrap_or_else(|e| e.into_inner())
    }
}
