//! Shipping the audit off the host: one task per collector reads the
//! audit directory from its cursor (see [`spool`]) and delivers the lines
//! in order, at least once, retrying with backoff while the collector is
//! down.

pub mod otlp;
pub mod spool;
pub mod syslog;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use spool::SpoolReader;

/// Records read and delivered at once.
const BATCH: usize = 500;

/// How often an idle shipper looks for new records.
const IDLE_POLL: Duration = Duration::from_millis(100);

/// Longest wait between two tries at a collector that is down.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How serious a record is, as both collectors rank it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Everything else.
    Info,
    /// Refusals, secret-backend failures, warning alerts.
    Warning,
    /// Critical alerts.
    Critical,
}

/// The level of a parsed audit record: an alert's own severity, warning
/// for refused credentials and calls and secret-backend failures.
pub fn level(record: &serde_json::Value) -> Level {
    let field = |name: &str| record.get(name).and_then(serde_json::Value::as_str);
    match (field("event"), field("severity")) {
        (_, Some("critical")) => Level::Critical,
        (_, Some("warning"))
        | (Some("auth_failed" | "call_denied" | "secret_backend_failed"), _) => Level::Warning,
        _ => Level::Info,
    }
}

/// What a shipper has done, for readiness and metrics.
pub struct ShipStatus {
    /// `syslog` or `otlp`.
    pub name: &'static str,
    /// The next record number to deliver.
    next_seq: AtomicU64,
    /// Records delivered since start.
    delivered: AtomicU64,
    /// Why the last try failed, while the collector is down.
    error: Mutex<Option<String>>,
}

impl ShipStatus {
    /// The next record number to deliver.
    pub fn next_seq(&self) -> u64 {
        self.next_seq.load(Ordering::Relaxed)
    }

    /// Records delivered since start.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// Why the collector cannot be reached, while it cannot.
    pub fn error(&self) -> Option<String> {
        self.error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_error(&self, error: Option<String>) {
        *self.error.lock().unwrap_or_else(|p| p.into_inner()) = error;
    }
}

/// Where one shipper delivers.
pub enum Target {
    /// A syslog collector.
    Syslog(syslog::SyslogSink),
    /// An OTLP/HTTP logs endpoint.
    Otlp(otlp::OtlpSink),
}

impl Target {
    fn name(&self) -> &'static str {
        match self {
            Self::Syslog(_) => "syslog",
            Self::Otlp(_) => "otlp",
        }
    }

    async fn deliver(&mut self, records: &[spool::Spooled]) -> Result<(), String> {
        match self {
            Self::Syslog(sink) => sink.deliver(records).await,
            Self::Otlp(sink) => sink.deliver(records).await,
        }
    }
}

/// Starts a shipper for `target` over the audit directory `dir`; it runs
/// until `stop`.
pub fn start(dir: PathBuf, mut target: Target, stop: CancellationToken) -> Arc<ShipStatus> {
    let name = target.name();
    let mut reader = SpoolReader::open(&dir, name);
    let status = Arc::new(ShipStatus {
        name,
        next_seq: AtomicU64::new(reader.next_seq()),
        delivered: AtomicU64::new(0),
        error: Mutex::new(None),
    });
    let shared = Arc::clone(&status);
    tokio::spawn(async move {
        let mut backoff = IDLE_POLL;
        while !stop.is_cancelled() {
            let pause = match reader.read(BATCH) {
                Err(err) => Some(format!("cannot read the audit spool: {err}")),
                Ok(batch) if batch.records.is_empty() => {
                    backoff = IDLE_POLL;
                    None
                }
                Ok(batch) => match target.deliver(&batch.records).await {
                    Ok(()) => match reader.commit(&batch) {
                        Ok(()) => {
                            shared.set_error(None);
                            shared.next_seq.store(reader.next_seq(), Ordering::Relaxed);
                            shared
                                .delivered
                                .fetch_add(batch.records.len() as u64, Ordering::Relaxed);
                            backoff = IDLE_POLL;
                            continue;
                        }
                        Err(err) => Some(format!("cannot save the {name} cursor: {err}")),
                    },
                    Err(err) => Some(err),
                },
            };
            if let Some(error) = pause {
                if shared.error().as_deref() != Some(error.as_str()) {
                    tracing::warn!(target: "stockade::shipping", "{error}; records stay in the audit directory and are sent when it answers");
                }
                shared.set_error(Some(error));
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = stop.cancelled() => {}
            }
        }
    });
    status
}
