//! RFC 5424 syslog over TCP (optionally TLS), framed by octet counting
//! (RFC 6587). Each message carries the audit line whole as its MSG, the
//! record number as MSGID and in structured data, so the SIEM can check
//! the chain and spot duplicates.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use syslog::{Formatter5424, LogFormat, Severity};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::spool::Spooled;
use crate::audit::settings::SyslogSettings;

/// Longest a connect or a write may take before the collector counts as down.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// The private-enterprise id of the structured data (the one RFC 5612
/// reserves for documentation and examples).
const SD_ID: &str = "stockade@32473";

type Connection = Box<dyn AsyncWrite + Send + Sync + Unpin>;

/// A syslog collector and the connection to it.
pub struct SyslogSink {
    settings: SyslogSettings,
    formatter: Formatter5424,
    connection: Option<Connection>,
    /// The last batch written: sent again after a reconnect, since TCP
    /// syslog has no acknowledgement (duplicates carry the same `seq`).
    last_batch: Vec<Spooled>,
}

impl SyslogSink {
    /// A sink for `settings`; it connects on first delivery.
    pub fn new(settings: SyslogSettings) -> Self {
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty());
        Self {
            formatter: Formatter5424 {
                facility: settings.facility,
                hostname,
                process: "stockade".into(),
                pid: std::process::id(),
            },
            settings,
            connection: None,
            last_batch: Vec::new(),
        }
    }

    /// Writes `records`; an error drops the connection.
    pub async fn deliver(&mut self, records: &[Spooled]) -> Result<(), String> {
        let mut bytes = Vec::new();
        if self.connection.is_none() {
            self.connection = Some(self.connect().await?);
            for record in &self.last_batch {
                self.frame(&mut bytes, record)?;
            }
        }
        for record in records {
            self.frame(&mut bytes, record)?;
        }
        let connection = self.connection.as_mut().expect("connected above");
        let written = tokio::time::timeout(IO_TIMEOUT, async {
            connection.write_all(&bytes).await?;
            connection.flush().await
        })
        .await;
        match written {
            Ok(Ok(())) => {
                self.last_batch = records.to_vec();
                Ok(())
            }
            Ok(Err(err)) => {
                self.connection = None;
                Err(format!("syslog {}: {err}", self.settings.address))
            }
            Err(_) => {
                self.connection = None;
                Err(format!("syslog {}: write timed out", self.settings.address))
            }
        }
    }

    /// One message, octet-counted.
    fn frame(&self, bytes: &mut Vec<u8>, record: &Spooled) -> Result<(), String> {
        let parsed: Value = serde_json::from_str(&record.line).unwrap_or_default();
        let event = parsed
            .get("event")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let severity = match super::level(&parsed) {
            super::Level::Critical => Severity::LOG_CRIT,
            super::Level::Warning => Severity::LOG_WARNING,
            super::Level::Info => Severity::LOG_INFO,
        };
        let mut data = std::collections::BTreeMap::new();
        data.insert(
            SD_ID.into(),
            [
                ("seq".to_owned(), record.seq.to_string()),
                ("event".to_owned(), event),
            ]
            .into_iter()
            .collect(),
        );
        let mut message = Vec::with_capacity(record.line.len() + 160);
        // MSGID is a number in this formatter: the record's, modulo 2^32.
        let message_id = (record.seq & u64::from(u32::MAX)) as u32;
        self.formatter
            .format(&mut message, severity, (message_id, data, &record.line))
            .map_err(|e| format!("cannot format a syslog message: {e}"))?;
        bytes.extend_from_slice(format!("{} ", message.len()).as_bytes());
        bytes.extend_from_slice(&message);
        Ok(())
    }

    async fn connect(&self) -> Result<Connection, String> {
        let address = &self.settings.address;
        let tcp = tokio::time::timeout(IO_TIMEOUT, tokio::net::TcpStream::connect(address))
            .await
            .map_err(|_| format!("syslog {address}: connect timed out"))?
            .map_err(|e| format!("syslog {address}: {e}"))?;
        if !self.settings.tls {
            return Ok(Box::new(tcp));
        }
        let mut roots = rustls::RootCertStore::empty();
        match &self.settings.ca_file {
            Some(path) => {
                let certs = CertificateDer::pem_file_iter(path)
                    .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| format!("audit.syslog.ca_file {}: {e}", path.display()))?;
                roots.add_parsable_certificates(certs);
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name = ServerName::try_from(self.settings.server_name.clone())
            .map_err(|_| format!("syslog: {} is not a server name", self.settings.server_name))?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("syslog {address}: TLS: {e}"))?;
        Ok(Box::new(tls))
    }
}
