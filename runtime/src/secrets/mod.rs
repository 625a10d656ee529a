//! Where tool credentials come from: Vault (or OpenBao) in production, a
//! loudly-labelled local file for development. Manifests hold references;
//! config files holding literal credentials are refused.

mod dev;
pub mod literal;
mod vault;

use std::fmt;
use std::sync::Arc;

use stockade_host_api::secrets::{FetchFuture, SecretSource, SecretUnavailable, SecretValue};

use crate::audit::{Audit, AuditRecord, EventKind};

pub use dev::DevBackend;
pub use vault::{VaultAuth, VaultBackend, VaultSettings};

/// A KV v2 reference: `<mount>/data/<path>#<key>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef {
    /// KV v2 mount, e.g. `secret`.
    pub mount: String,
    /// Secret path inside the mount, e.g. `tools/weather`.
    pub path: String,
    /// Key inside the secret, e.g. `api_key`.
    pub key: String,
}

impl SecretRef {
    /// Parses `secret/data/tools/weather#api_key`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let expected = || {
            format!(
                "a KV v2 reference such as \"secret/data/tools/weather#api_key\", got \"{text}\""
            )
        };
        let (location, key) = text.split_once('#').ok_or_else(expected)?;
        let (mount, path) = location.split_once("/data/").ok_or_else(expected)?;
        let clean = |s: &str| {
            !s.is_empty()
                && !s.starts_with('/')
                && !s.ends_with('/')
                && s.split('/')
                    .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
        };
        if !clean(mount) || !clean(path) || key.is_empty() || key.contains(['/', '#']) {
            return Err(expected());
        }
        Ok(Self {
            mount: mount.to_owned(),
            path: path.to_owned(),
            key: key.to_owned(),
        })
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/data/{}#{}", self.mount, self.path, self.key)
    }
}

/// Why a backend could not produce a value (kept free of detail).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Vault could not be reached or answered unexpectedly.
    Unreachable,
    /// The secret or key does not exist.
    Missing,
    /// Vault refused the read.
    Denied,
    /// Stockade could not log in.
    Auth,
}

impl Failure {
    fn reason(self) -> &'static str {
        match self {
            Self::Unreachable => "the secret store is unreachable",
            Self::Missing => "not found in the secret store",
            Self::Denied => "permission denied by the secret store",
            Self::Auth => "cannot authenticate to the secret store",
        }
    }
}

/// The process's secret backend.
pub enum Backend {
    /// Vault or OpenBao.
    Vault(Arc<VaultBackend>),
    /// A local development file.
    Dev(DevBackend),
}

impl Backend {
    /// Whether the backend answers now (for readiness): Vault must accept
    /// a login; a development file always does.
    pub async fn check(&self) -> Result<(), &'static str> {
        match self {
            Self::Vault(vault) => vault.check().await.map_err(Failure::reason),
            Self::Dev(_) => Ok(()),
        }
    }

    async fn read(&self, reference: &SecretRef) -> Result<String, Failure> {
        match self {
            Self::Vault(vault) => vault.read(reference).await,
            Self::Dev(dev) => dev.read(reference),
        }
    }
}

/// One tool's view of the backend: only the names its manifest declares.
pub struct ToolSecrets {
    backend: Arc<Backend>,
    references: Vec<(String, SecretRef)>,
    /// Where backend failures are recorded.
    audit: Option<Arc<Audit>>,
}

impl ToolSecrets {
    /// The secrets `references` (manifest name -> reference) from
    /// `backend`; failures are recorded in `audit`.
    pub fn new(
        backend: Arc<Backend>,
        references: Vec<(String, SecretRef)>,
        audit: Option<Arc<Audit>>,
    ) -> Self {
        Self {
            backend,
            references,
            audit,
        }
    }
}

impl SecretSource for ToolSecrets {
    fn fetch<'a>(&'a self, name: &'a str) -> FetchFuture<'a> {
        Box::pin(async move {
            let unavailable = |reason| SecretUnavailable {
                name: name.to_owned(),
                reason,
            };
            let reference = self
                .references
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, r)| r)
                .ok_or_else(|| unavailable("not declared by this tool"))?;
            match self.backend.read(reference).await {
                Ok(value) => Ok(SecretValue::new(value)),
                Err(failure) => {
                    tracing::warn!(target: "stockade::secrets", secret = name, "{}", failure.reason());
                    if let Some(audit) = &self.audit {
                        let mut record = AuditRecord::new(EventKind::SecretBackendFailed);
                        record.outcome = Some("failed");
                        record.detail = Some(failure.reason());
                        record.data = Some(serde_json::json!({ "secret": name }));
                        audit.record_or_log(&record);
                    }
                    Err(unavailable(failure.reason()))
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kv2_references() {
        let r = SecretRef::parse("secret/data/tools/weather#api_key").unwrap();
        assert_eq!(
            (r.mount.as_str(), r.path.as_str(), r.key.as_str()),
            ("secret", "tools/weather", "api_key")
        );
        assert_eq!(r.to_string(), "secret/data/tools/weather#api_key");
        for bad in [
            "secret/tools/weather#api_key",
            "secret/data/tools/weather",
            "secret/data/../sys#x",
            "/data/x#k",
            "secret/data/x#",
        ] {
            assert!(SecretRef::parse(bad).is_err(), "{bad}");
        }
    }
}
