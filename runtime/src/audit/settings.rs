//! `[audit]` in `stockade.toml`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::config::ConfigError;
use crate::units::{parse_duration, parse_size};

/// `[audit]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    dir: Option<PathBuf>,
    signing_key_file: Option<PathBuf>,
    fsync: Option<String>,
    fsync_window: Option<String>,
    checkpoint_interval: Option<String>,
    max_file_size: Option<String>,
    retention: Option<String>,
    max_value_bytes: Option<usize>,
    syslog: Option<RawSyslog>,
    otlp: Option<RawOtlp>,
}

/// `[audit.syslog]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSyslog {
    address: String,
    #[serde(default)]
    tls: bool,
    ca_file: Option<PathBuf>,
    server_name: Option<String>,
    facility: Option<String>,
}

/// `[audit.otlp]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOtlp {
    endpoint: String,
    ca_file: Option<PathBuf>,
}

/// Where `[audit.syslog]` ships records: RFC 5424 over TCP.
#[derive(Debug, Clone)]
pub struct SyslogSettings {
    /// `host:port` of the collector.
    pub address: String,
    /// Wrap the connection in TLS.
    pub tls: bool,
    /// CA bundle the collector's certificate must chain to (default: the
    /// public web roots).
    pub ca_file: Option<PathBuf>,
    /// Name the certificate must carry (default: the address's host).
    pub server_name: String,
    /// Syslog facility.
    pub facility: syslog::Facility,
}

/// Where `[audit.otlp]` ships records: OpenTelemetry logs over OTLP/HTTP.
#[derive(Debug, Clone)]
pub struct OtlpSettings {
    /// The logs endpoint, e.g. `https://collector:4318/v1/logs`.
    pub endpoint: String,
    /// CA bundle for an https endpoint (default: the public web roots).
    pub ca_file: Option<PathBuf>,
}

/// When written records are forced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// Before the response of the call they belong to is sent.
    Every,
    /// Within the window after they are written (they are written to the
    /// operating system before the response either way, so they survive
    /// the process being killed; the window is what a power loss costs).
    Batch(Duration),
}

/// `[audit]`, checked.
#[derive(Debug, Clone)]
pub struct AuditSettings {
    /// Where the chained files go; `None` means standard error, unsigned.
    pub dir: Option<PathBuf>,
    /// The Ed25519 key checkpoints are signed with.
    pub signing_key_file: Option<PathBuf>,
    /// When records reach the disk.
    pub fsync: Fsync,
    /// How often a signed checkpoint closes what was written since the last.
    pub checkpoint_interval: Duration,
    /// A file is rotated when it reaches this size (and at UTC midnight).
    pub max_file_size: u64,
    /// Files older than this are deleted, the deletion recorded.
    pub retention: Duration,
    /// Longest string argument value kept in a record; longer ones are cut.
    pub max_value_bytes: usize,
    /// Shipping to a syslog collector.
    pub syslog: Option<SyslogSettings>,
    /// Shipping to an OTLP/HTTP logs endpoint.
    pub otlp: Option<OtlpSettings>,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            dir: None,
            signing_key_file: None,
            fsync: Fsync::Batch(Duration::from_millis(50)),
            checkpoint_interval: Duration::from_secs(10),
            max_file_size: 64 << 20,
            retention: Duration::from_secs(90 * 86_400),
            max_value_bytes: 256,
            syslog: None,
            otlp: None,
        }
    }
}

impl RawAudit {
    /// Checks every field; paths are taken relative to `base`.
    pub fn check(
        &self,
        base: &Path,
        invalid: &dyn Fn(&str, &str) -> ConfigError,
    ) -> Result<AuditSettings, ConfigError> {
        let defaults = AuditSettings::default();
        let duration = |key: &str, text: &Option<String>, range: (Duration, Duration)| match text {
            None => Ok(None),
            Some(text) => parse_duration(text)
                .ok()
                .filter(|d| (range.0..=range.1).contains(d))
                .map(Some)
                .ok_or_else(|| {
                    invalid(
                        key,
                        &format!("a duration from {:?} to {:?}", range.0, range.1),
                    )
                }),
        };
        let window = duration(
            "audit.fsync_window",
            &self.fsync_window,
            (Duration::from_millis(1), Duration::from_secs(1)),
        )?
        .unwrap_or(Duration::from_millis(50));
        let fsync = match self.fsync.as_deref() {
            None | Some("batch") => Fsync::Batch(window),
            Some("every") => Fsync::Every,
            Some(_) => return Err(invalid("audit.fsync", "\"batch\" or \"every\"")),
        };
        let checkpoint_interval = duration(
            "audit.checkpoint_interval",
            &self.checkpoint_interval,
            (Duration::from_millis(100), Duration::from_secs(3600)),
        )?
        .unwrap_or(defaults.checkpoint_interval);
        let retention = duration(
            "audit.retention",
            &self.retention,
            (
                Duration::from_secs(86_400),
                Duration::from_secs(3650 * 86_400),
            ),
        )?
        .unwrap_or(defaults.retention);
        let max_file_size = match &self.max_file_size {
            None => defaults.max_file_size,
            Some(text) => parse_size(text)
                .ok()
                .filter(|n| (64 << 10..=1 << 40).contains(n))
                .ok_or_else(|| invalid("audit.max_file_size", "a size from 64KiB to 1TiB"))?,
        };
        let max_value_bytes = self.max_value_bytes.unwrap_or(defaults.max_value_bytes);
        if !(16..=65_536).contains(&max_value_bytes) {
            return Err(invalid(
                "audit.max_value_bytes",
                "a number from 16 to 65536",
            ));
        }
        let signing_key_file = self
            .signing_key_file
            .as_ref()
            .map(|p| crate::config::readable("audit.signing_key_file", base.join(p), invalid))
            .transpose()?;
        if signing_key_file.is_some() && self.dir.is_none() {
            return Err(invalid(
                "audit.signing_key_file",
                "to be set with audit.dir (records on standard error are not signed)",
            ));
        }
        if (self.syslog.is_some() || self.otlp.is_some()) && self.dir.is_none() {
            return Err(invalid(
                if self.syslog.is_some() {
                    "audit.syslog"
                } else {
                    "audit.otlp"
                },
                "to be set with audit.dir (the audit files are the shipping spool)",
            ));
        }
        let ca = |key: &str, path: &Option<PathBuf>| {
            path.as_ref()
                .map(|p| crate::config::readable(key, base.join(p), invalid))
                .transpose()
        };
        let syslog = match &self.syslog {
            None => None,
            Some(raw) => {
                let host = raw
                    .address
                    .rsplit_once(':')
                    .filter(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
                    .map(|(host, _)| host.trim_start_matches('[').trim_end_matches(']'))
                    .ok_or_else(|| invalid("audit.syslog.address", "host:port"))?;
                let facility = raw
                    .facility
                    .as_deref()
                    .unwrap_or("local0")
                    .parse()
                    .map_err(|_| {
                        invalid(
                            "audit.syslog.facility",
                            "a syslog facility such as \"local0\", \"auth\" or \"authpriv\"",
                        )
                    })?;
                Some(SyslogSettings {
                    address: raw.address.clone(),
                    tls: raw.tls || raw.ca_file.is_some(),
                    ca_file: ca("audit.syslog.ca_file", &raw.ca_file)?,
                    server_name: raw.server_name.clone().unwrap_or_else(|| host.to_owned()),
                    facility,
                })
            }
        };
        let otlp = match &self.otlp {
            None => None,
            Some(raw) => {
                crate::config::secure_url(
                    "audit.otlp.endpoint",
                    &raw.endpoint,
                    "https://collector.internal:4318/v1/logs",
                    invalid,
                )?;
                Some(OtlpSettings {
                    endpoint: raw.endpoint.clone(),
                    ca_file: ca("audit.otlp.ca_file", &raw.ca_file)?,
                })
            }
        };
        Ok(AuditSettings {
            syslog,
            otlp,
            dir: self.dir.as_ref().map(|d| base.join(d)),
            signing_key_file,
            fsync,
            checkpoint_interval,
            max_file_size,
            retention,
            max_value_bytes,
        })
    }
}
