//! TLS for the HTTP listener: rustls from PEM files, TLS 1.2 and 1.3,
//! the certificate reloaded when its files change, and optional client
//! certificates whose subject names the client.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;

/// How often the certificate files are checked for a change.
const RELOAD_EVERY: Duration = Duration::from_secs(2);

/// `[http.tls]`, checked.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// PEM bundle of the CAs whose client certificates are accepted.
    pub client_ca: Option<PathBuf>,
    /// Whether every client must present a certificate.
    pub client_cert_required: bool,
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{}: {reason}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The certificate in use, swapped when the files change.
#[derive(Debug)]
struct ReloadingCert {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

/// The rustls server configuration for `settings`, plus a task that
/// reloads the certificate when its files change (a broken new file is
/// logged and the old certificate kept).
pub fn server_config(settings: &TlsSettings) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let resolver = Arc::new(ReloadingCert {
        current: RwLock::new(Arc::new(load_cert(settings, &provider)?)),
    });
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let builder = match &settings.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in read_certs(ca)? {
                roots.add(cert).map_err(|err| TlsError::File {
                    path: ca.clone(),
                    reason: err.to_string(),
                })?;
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let verifier = if settings.client_cert_required {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            let verifier = verifier.build().map_err(|err| TlsError::File {
                path: ca.clone(),
                reason: err.to_string(),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(resolver.clone());
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio::spawn(reload_on_change(
        settings.clone(),
        provider,
        Arc::downgrade(&resolver),
    ));
    Ok(Arc::new(config))
}

fn load_cert(
    settings: &TlsSettings,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let chain = read_certs(&settings.cert)?;
    let key = PrivateKeyDer::from_pem_file(&settings.key).map_err(|err| TlsError::File {
        path: settings.key.clone(),
        reason: format!("no usable private key: {err}"),
    })?;
    CertifiedKey::from_der(chain, key, provider).map_err(|err| TlsError::File {
        path: settings.key.clone(),
        reason: format!("does not fit the certificate: {err}"),
    })
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<_, _>>())
        .map_err(|err| TlsError::File {
            path: path.to_owned(),
            reason: err.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::File {
            path: path.to_owned(),
            reason: "no certificate in the file".into(),
        });
    }
    Ok(certs)
}

fn modified(settings: &TlsSettings) -> Option<(SystemTime, SystemTime)> {
    let at = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    Some((at(&settings.cert)?, at(&settings.key)?))
}

/// Polls the files' modification times; reloads when either changes.
async fn reload_on_change(
    settings: TlsSettings,
    provider: Arc<rustls::crypto::CryptoProvider>,
    resolver: std::sync::Weak<ReloadingCert>,
) {
    let mut seen = modified(&settings);
    loop {
        tokio::time::sleep(RELOAD_EVERY).await;
        let Some(resolver) = resolver.upgrade() else {
            return;
        };
        let now = modified(&settings);
        if now == seen {
            continue;
        }
        seen = now;
        match load_cert(&settings, &provider) {
            Ok(cert) => {
                *resolver.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(cert);
                tracing::info!(target: "stockade::http", cert = %settings.cert.display(), "TLS certificate reloaded");
            }
            Err(err) => {
                tracing::error!(target: "stockade::http", "TLS certificate not reloaded, the old one stays: {err}")
            }
        }
    }
}

/// The subject of a verified client certificate: its common name, or the
/// whole subject when it has none.
pub fn client_subject(certs: Option<&[CertificateDer<'_>]>) -> Option<String> {
    let leaf = certs?.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    let subject = cert.subject();
    let common_name = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned);
    Some(common_name.unwrap_or_else(|| subject.to_string()))
}
