//! Ed25519 keys for audit checkpoints: `stockade keygen` makes a pair, the
//! server signs with the private half, `stockade audit verify` checks with
//! the public half.

use std::path::Path;

use base64::Engine as _;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use sha2::{Digest, Sha256};

const PRIVATE_LABEL: &str = "STOCKADE AUDIT SIGNING KEY";
const PUBLIC_LABEL: &str = "STOCKADE AUDIT PUBLIC KEY";

/// A key file that cannot be used, and why.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct KeyError {
    /// The file.
    pub path: String,
    /// What is wrong with it.
    pub reason: String,
}

/// The private key the server signs checkpoints with.
pub struct Signer {
    pair: Ed25519KeyPair,
    /// Short id of the public key, written into every checkpoint.
    pub key_id: String,
}

/// A public key that checks checkpoints.
pub struct Checker {
    public: Vec<u8>,
    /// Short id of the key, as checkpoints name it.
    pub key_id: String,
}

/// The short id of a public key: the first 16 hex digits of its SHA-256.
fn key_id(public: &[u8]) -> String {
    hex::encode(&Sha256::digest(public)[..8])
}

fn armor(label: &str, bytes: &[u8]) -> String {
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

fn unarmor(path: &Path, label: &str) -> Result<Vec<u8>, KeyError> {
    let fail = |reason: String| KeyError {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let body = text
        .trim()
        .strip_prefix(&format!("-----BEGIN {label}-----"))
        .and_then(|rest| rest.strip_suffix(&format!("-----END {label}-----")))
        .ok_or_else(|| fail(format!("not a {label} (made by `stockade keygen`)")))?;
    let compact: String = body.split_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|_| fail(format!("not a {label}: the body is not base64")))
}

/// A new key pair: the private key file's text and the public key file's.
pub fn generate() -> Result<(String, String, String), String> {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| "no randomness for a key")?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| "key generation failed")?;
    let public = pair.public_key().as_ref();
    Ok((
        armor(PRIVATE_LABEL, pkcs8.as_ref()),
        armor(PUBLIC_LABEL, public),
        key_id(public),
    ))
}

impl Signer {
    /// Reads a private key written by `stockade keygen`.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let der = unarmor(path, PRIVATE_LABEL)?;
        let pair = Ed25519KeyPair::from_pkcs8(&der).map_err(|_| KeyError {
            path: path.display().to_string(),
            reason: "not an Ed25519 private key".into(),
        })?;
        let key_id = key_id(pair.public_key().as_ref());
        Ok(Self { pair, key_id })
    }

    /// The base64 signature of `message`.
    pub fn sign(&self, message: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.pair.sign(message).as_ref())
    }
}

impl Checker {
    /// Reads a public key written by `stockade keygen`.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let public = unarmor(path, PUBLIC_LABEL)?;
        if public.len() != 32 {
            return Err(KeyError {
                path: path.display().to_string(),
                reason: "not an Ed25519 public key (32 bytes)".into(),
            });
        }
        let key_id = key_id(&public);
        Ok(Self { public, key_id })
    }

    /// Whether `signature` (base64) signs `message`.
    pub fn verifies(&self, message: &[u8], signature: &str) -> bool {
        let Ok(signature) = base64::engine::general_purpose::STANDARD.decode(signature) else {
            return false;
        };
        UnparsedPublicKey::new(&ED25519, &self.public)
            .verify(message, &signature)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_checks_only_with_its_own_key_and_message() {
        let dir = std::env::temp_dir().join(format!("stockade-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (private, public, id) = generate().unwrap();
        std::fs::write(dir.join("k"), private).unwrap();
        std::fs::write(dir.join("k.pub"), public).unwrap();
        let signer = Signer::load(&dir.join("k")).unwrap();
        let checker = Checker::load(&dir.join("k.pub")).unwrap();
        assert_eq!(
            (signer.key_id.as_str(), checker.key_id.as_str()),
            (id.as_str(), id.as_str())
        );
        let signature = signer.sign(b"message");
        assert!(checker.verifies(b"message", &signature));
        assert!(!checker.verifies(b"massage", &signature));
        let (_, other, _) = generate().unwrap();
        std::fs::write(dir.join("other.pub"), other).unwrap();
        assert!(
            !Checker::load(&dir.join("other.pub"))
                .unwrap()
                .verifies(b"message", &signature)
        );
        assert!(Signer::load(&dir.join("k.pub")).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
