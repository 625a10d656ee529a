//! The Vault (or OpenBao) backend: KV v2 reads through vaultrs, with token
//! or AppRole login, renewal before expiry and a short value cache.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use vaultrs::api::EndpointMiddleware;
use vaultrs::client::{Client, VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;

use super::{Failure, SecretRef};

/// How Stockade authenticates to Vault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VaultAuth {
    /// A token read from a file (re-read when it stops working).
    TokenFile(PathBuf),
    /// AppRole login with role and secret ids read from files.
    AppRole {
        /// Auth mount, usually `approle`.
        mount: String,
        /// File holding the role id.
        role_id_file: PathBuf,
        /// File holding the secret id.
        secret_id_file: PathBuf,
    },
}

/// `[vault]` in `stockade.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultSettings {
    /// `https://vault.internal:8200` (plain http only for loopback).
    pub address: String,
    /// PEM bundle of the CA that signed Vault's certificate.
    pub ca_bundle: Option<PathBuf>,
    /// Login method.
    pub auth: VaultAuth,
    /// How long a value read from Vault is reused before it is read again.
    pub cache_ttl: Duration,
    /// Time allowed for one request to Vault.
    pub timeout: Duration,
}

/// A logged-in client and when its token needs attention.
struct Session {
    client: VaultClient,
    /// When to renew (or log in again); `None` for tokens that never expire.
    refresh_at: Option<Instant>,
    renewable: bool,
}

/// Reads secrets from Vault.
pub struct VaultBackend {
    settings: VaultSettings,
    session: tokio::sync::Mutex<Option<Session>>,
    cache: std::sync::Mutex<HashMap<(String, String), CachedSecret>>,
}

/// One KV v2 secret as last read: when, and its string fields.
type CachedSecret = (Instant, HashMap<String, String>);

impl VaultBackend {
    /// A backend that logs in lazily, so Stockade starts while Vault is
    /// down, and renews its token in the background before it expires.
    pub fn start(settings: VaultSettings) -> Arc<Self> {
        let backend = Arc::new(Self {
            settings,
            session: tokio::sync::Mutex::new(None),
            cache: std::sync::Mutex::new(HashMap::new()),
        });
        tokio::spawn(renew_in_background(Arc::downgrade(&backend)));
        backend
    }

    /// The current value of `reference`.
    pub async fn read(&self, reference: &SecretRef) -> Result<String, Failure> {
        let key = (reference.mount.clone(), reference.path.clone());
        if let Some((read_at, data)) = self.cache.lock().expect("vault cache").get(&key)
            && read_at.elapsed() < self.settings.cache_ttl
        {
            return data.get(&reference.key).cloned().ok_or(Failure::Missing);
        }
        let data = match self.read_fresh(reference).await {
            // A 403 may be an expired or revoked token: log in once more.
            Err(Failure::Denied) => {
                *self.session.lock().await = None;
                self.read_fresh(reference).await?
            }
            other => other?,
        };
        let value = data.get(&reference.key).cloned().ok_or(Failure::Missing);
        self.cache
            .lock()
            .expect("vault cache")
            .insert(key, (Instant::now(), data));
        value
    }

    /// Logs in (or renews) if needed: succeeds when Vault answers and
    /// accepts Stockade's credentials.
    pub async fn check(&self) -> Result<(), Failure> {
        let mut session = self.session.lock().await;
        self.refresh(&mut session).await
    }

    async fn read_fresh(&self, reference: &SecretRef) -> Result<HashMap<String, String>, Failure> {
        let mut session = self.session.lock().await;
        self.refresh(&mut session).await?;
        let client = &session.as_ref().ok_or(Failure::Unreachable)?.client;
        let data: HashMap<String, serde_json::Value> =
            vaultrs::kv2::read(client, &reference.mount, &reference.path)
                .await
                .map_err(classify)?;
        Ok(data
            .into_iter()
            .filter_map(|(k, v)| v.as_str().map(|s| (k, s.to_owned())))
            .collect())
    }

    /// Logs in when there is no session, renews a token close to expiry,
    /// and logs in again when renewal fails.
    async fn refresh(&self, session: &mut Option<Session>) -> Result<(), Failure> {
        let due = session
            .as_ref()
            .is_some_and(|s| s.refresh_at.is_some_and(|at| Instant::now() >= at));
        if due && let Some(current) = session.as_mut() {
            let renewed = if current.renewable {
                match current.client.renew(None).await {
                    Ok(auth) => Some(auth),
                    Err(err) => {
                        tracing::info!(target: "stockade::secrets", "vault token renewal failed, logging in again: {err}");
                        None
                    }
                }
            } else {
                None
            };
            match renewed {
                Some(auth) => {
                    current.refresh_at = refresh_time(auth.lease_duration);
                    tracing::debug!(target: "stockade::secrets", "vault token renewed");
                    return Ok(());
                }
                None => *session = None,
            }
        }
        if session.is_none() {
            *session = Some(self.login().await?);
        }
        Ok(())
    }

    async fn login(&self) -> Result<Session, Failure> {
        let mut client = self.client()?;
        match &self.settings.auth {
            VaultAuth::TokenFile(path) => {
                let token = read_trimmed(path)?;
                client.set_token(&token);
                let info = client.lookup().await.map_err(classify)?;
                let refresh_at = refresh_time(info.ttl);
                Ok(Session {
                    client,
                    refresh_at,
                    renewable: info.renewable.unwrap_or(false),
                })
            }
            VaultAuth::AppRole {
                mount,
                role_id_file,
                secret_id_file,
            } => {
                let role_id = read_trimmed(role_id_file)?;
                let secret_id = read_trimmed(secret_id_file)?;
                let auth = vaultrs::auth::approle::login(&client, mount, &role_id, &secret_id)
                    .await
                    .map_err(classify)?;
                client.set_token(&auth.client_token);
                tracing::info!(target: "stockade::secrets", "logged in to vault with approle");
                Ok(Session {
                    client,
                    refresh_at: refresh_time(auth.lease_duration),
                    renewable: auth.renewable,
                })
            }
        }
    }
}

impl VaultBackend {
    /// A client for the configured address with an HTTP stack of our own:
    /// proxy variables (`HTTP_PROXY`, `ALL_PROXY`, …) are ignored, and when
    /// a CA bundle is configured it is the only trust anchor (the public
    /// roots are not consulted).
    fn client(&self) -> Result<VaultClient, Failure> {
        let mut settings = VaultClientSettingsBuilder::default();
        settings
            .address(&self.settings.address)
            .token("")
            .verify(true)
            .identity(None)
            .ca_certs(Vec::new())
            .namespace(None)
            .timeout(Some(self.settings.timeout));
        let settings = settings.build().map_err(|_| Failure::Unreachable)?;
        let mut http = reqwest::Client::builder()
            .tls_backend_rustls()
            .no_proxy()
            .timeout(self.settings.timeout);
        if let Some(path) = &self.settings.ca_bundle {
            let roots = std::fs::read(path)
                .ok()
                .and_then(|pem| reqwest::Certificate::from_pem_bundle(&pem).ok())
                .filter(|roots| !roots.is_empty())
                .ok_or_else(|| {
                    tracing::error!(target: "stockade::secrets", "cannot read a CA certificate from vault ca_bundle {}", path.display());
                    Failure::Unreachable
                })?;
            http = http.tls_certs_only(roots);
        }
        let http = http.build().map_err(|err| {
            tracing::error!(target: "stockade::secrets", "cannot build the vault HTTP client: {err}");
            Failure::Unreachable
        })?;
        Ok(VaultClient {
            http: rustify::clients::reqwest::Client::new(settings.address.as_str(), http),
            middle: EndpointMiddleware {
                token: String::new(),
                version: format!("v{}", settings.version),
                wrap: None,
                namespace: None,
            },
            settings,
        })
    }
}

/// Checks every second whether the token is due for renewal, until the
/// backend is dropped.
async fn renew_in_background(backend: Weak<VaultBackend>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let Some(backend) = backend.upgrade() else {
            return;
        };
        let mut session = backend.session.lock().await;
        if session.is_some() {
            // A failed renewal drops the session; the next read logs in.
            let _ = backend.refresh(&mut session).await;
        }
    }
}

/// Renew when two thirds of the lease have passed; 0 means no expiry.
fn refresh_time(lease_seconds: u64) -> Option<Instant> {
    (lease_seconds > 0).then(|| Instant::now() + Duration::from_secs(lease_seconds * 2 / 3))
}

fn read_trimmed(path: &PathBuf) -> Result<String, Failure> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .map_err(|err| {
            tracing::error!(target: "stockade::secrets", "cannot read vault credential file {}: {err}", path.display());
            Failure::Auth
        })
}

fn classify(err: ClientError) -> Failure {
    match err {
        ClientError::APIError { code: 404, .. } => Failure::Missing,
        ClientError::APIError { code: 403, .. } => Failure::Denied,
        ClientError::APIError {
            code: 400 | 401, ..
        } => Failure::Auth,
        ClientError::APIError { code, .. } => {
            tracing::warn!(target: "stockade::secrets", "vault answered status {code}");
            Failure::Unreachable
        }
        other => {
            tracing::warn!(target: "stockade::secrets", "vault request failed: {other}");
            Failure::Unreachable
        }
    }
}
