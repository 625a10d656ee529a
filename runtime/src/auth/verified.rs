//! Tokens that passed every check, remembered until they expire: a client
//! presents the same token on every request, and checking one costs a
//! signature verification or a round trip to the issuer.

use std::collections::HashMap;
use std::sync::Mutex;

use sha2::{Digest as _, Sha256};

use super::jwt::Claims;

/// Tokens remembered at most; past this the memory is cleared.
const CAPACITY: usize = 4096;

/// Checked tokens by SHA-256 of the whole token, with their claims.
#[derive(Default)]
pub struct VerifiedTokens {
    tokens: Mutex<HashMap<[u8; 32], Claims>>,
}

impl VerifiedTokens {
    /// The key `token` is remembered under.
    pub fn key(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    /// The claims of a remembered token that has not expired (allowing
    /// `leeway` seconds, as the first check did).
    pub fn get(&self, key: &[u8; 32], leeway: i64) -> Option<Claims> {
        let now = jsonwebtoken::get_current_timestamp() as i64;
        self.lock()
            .get(key)
            .filter(|claims| claims.exp.is_some_and(|exp| exp as i64 + leeway > now))
            .cloned()
    }

    /// Remembers a token that passed.
    pub fn insert(&self, key: [u8; 32], claims: Claims) {
        let mut tokens = self.lock();
        if tokens.len() >= CAPACITY {
            tokens.clear();
        }
        tokens.insert(key, claims);
    }

    /// Forgets every token (the keys that vouched for them changed).
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Claims>> {
        self.tokens.lock().unwrap_or_else(|e| e.into_inner())
    }
}
