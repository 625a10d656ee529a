//! The development backend: secrets from a local TOML file, for demos
//! without a Vault server. Only `stockade serve --dev-secrets FILE` uses it,
//! and it says so loudly.

use std::collections::HashMap;
use std::path::Path;

use super::{Failure, SecretRef};

/// Values keyed by their Vault reference, e.g.
/// `"secret/data/tools/demo#token" = "..."`.
pub struct DevBackend {
    values: HashMap<String, String>,
}

impl DevBackend {
    /// Reads the file; every value must be a string.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|err| format!("{}: cannot read: {err}", path.display()))?;
        let values: HashMap<String, String> = toml::from_str(&text).map_err(|err| {
            format!(
                "{}: expected `\"mount/data/path#key\" = \"value\"` lines: {}",
                path.display(),
                err.message()
            )
        })?;
        tracing::warn!(
            target: "stockade::secrets",
            "DEVELOPMENT SECRETS from {} — not for production: values sit in a plain file; use [vault]",
            path.display()
        );
        Ok(Self { values })
    }

    /// The value stored for `reference`.
    pub fn read(&self, reference: &SecretRef) -> Result<String, Failure> {
        self.values
            .get(&reference.to_string())
            .cloned()
            .ok_or(Failure::Missing)
    }
}
