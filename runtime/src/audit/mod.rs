//! The audit trail: one JSON record per event, written by its own writer
//! (no log filter can silence it), hash-chained, and — with `[audit] dir` —
//! kept in rotated files with signed checkpoints that `stockade audit
//! verify` checks and `stockade audit query` searches. Without a directory
//! the chained records go to standard error.

pub mod chain;
mod cursor;
mod error;
pub mod file;
pub mod mask;
pub mod query;
pub mod settings;
pub mod ship;
pub mod signing;
pub mod verify;

use std::io::Write;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::Value;
use stockade_host_api::CallerIdentity;
use stockade_host_api::secrets::Redactor;

pub use error::AuditError;
pub use settings::{AuditSettings, RawAudit};

use chain::Chain;
use file::FileLog;

/// What a record is about.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The server loaded its config and tools.
    ConfigLoaded,
    /// The server stopped.
    Stopped,
    /// An HTTP request's credentials were refused.
    AuthFailed,
    /// A tool list was served.
    List,
    /// A call passed policy and validation and is about to run.
    CallStarted,
    /// A call ran (whatever its outcome).
    CallFinished,
    /// Policy or validation refused a call before it ran.
    CallDenied,
    /// The secret backend could not give a tool its credential.
    SecretBackendFailed,
    /// An anomaly an observer noticed (see [`Observer`]).
    Alert,
    /// A tool differs from the signed tool lock and is kept out of service.
    LockDrift,
    /// An operator changed a kill switch.
    Control,
    /// The configuration was reloaded, or a reload was refused.
    Reload,
    /// A call's approval was asked for, given or refused.
    Approval,
}

/// An anomaly worth a record, a metric and a notification.
#[derive(Debug, Clone)]
pub struct Alert {
    /// What kind: `first_use`, `off_hours`, `error_spike`, `egress_denials`, `tool_changed`, `lock_drift`.
    pub kind: &'static str,
    /// `warning` or `critical`.
    pub severity: &'static str,
    /// The client it concerns.
    pub client: Option<String>,
    /// The tool it concerns.
    pub tool: Option<String>,
    /// What happened, in words.
    pub detail: String,
}

/// Something that reads every record once it is written: metrics, alerts.
pub trait Observer: Send + Sync {
    /// Takes note of `record`; returns the alerts it raises.
    fn observe(&self, record: &AuditRecord<'_>) -> Vec<Alert>;
}

/// What the transport knows of one request, for its audit records.
#[derive(Debug, Clone, Default)]
pub struct RequestInfo {
    /// The connection (session) the request came on.
    pub session: Arc<str>,
    /// The JSON-RPC id, as text.
    pub id: String,
    /// The MCP protocol version the request was made under.
    pub protocol: Option<String>,
}

/// One audit record, before the writer adds `seq`, `ts` and `prev`.
#[derive(Debug, Serialize)]
pub struct AuditRecord<'a> {
    /// Event kind.
    pub event: EventKind,
    /// Correlation id shared by every record and log line of one request;
    /// the client gets it in the result's `_meta`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation: Option<&'a str>,
    /// The connection the request came on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<&'a str>,
    /// The JSON-RPC id of the request, as text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<&'a str>,
    /// The MCP protocol version of the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<&'a str>,
    /// Client identity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<&'a str>,
    /// User identity (the token's subject).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<&'a str>,
    /// The caller's groups.
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub groups: &'a [String],
    /// Tool name, where there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<&'a str>,
    /// SHA-256 of the tool's component.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub component: Option<&'a str>,
    /// The arguments, masked (see [`mask`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arguments: Option<Value>,
    /// `succeeded`, `failed`, `limited` or `denied`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<&'static str>,
    /// What kind of failure or refusal: `tool_error`, `limit`,
    /// `unknown_tool`, `invalid_arguments`, ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_class: Option<&'a str>,
    /// Wall-clock time in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Fuel burnt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    /// Bytes of output returned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_bytes: Option<u64>,
    /// Destinations contacted.
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub egress: &'a [String],
    /// What the host refused during the call, by rule.
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub refusals: &'a [String],
    /// Instruction-like phrases found in what the tool returned.
    #[serde(skip_serializing_if = "<[&str]>::is_empty")]
    pub flags: &'a [&'static str],
    /// Refusals and limit messages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<&'a str>,
    /// How serious an alert is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<&'a str>,
    /// Whatever else the event carries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl<'a> AuditRecord<'a> {
    /// A record of `event` with nothing else filled in.
    pub fn new(event: EventKind) -> Self {
        Self {
            event,
            correlation: None,
            session: None,
            request_id: None,
            protocol: None,
            client: None,
            user: None,
            groups: &[],
            tool: None,
            component: None,
            arguments: None,
            outcome: None,
            error_class: None,
            duration_ms: None,
            fuel: None,
            output_bytes: None,
            egress: &[],
            refusals: &[],
            flags: &[],
            detail: None,
            severity: None,
            data: None,
        }
    }

    /// The record of one request's event by `caller`.
    pub fn of_call(
        event: EventKind,
        correlation: &'a str,
        caller: &'a CallerIdentity,
        request: &'a RequestInfo,
    ) -> Self {
        Self {
            correlation: Some(correlation),
            session: Some(&request.session),
            request_id: Some(&request.id),
            protocol: request.protocol.as_deref(),
            client: Some(&caller.client),
            user: caller.user.as_deref(),
            groups: &caller.groups,
            ..Self::new(event)
        }
    }
}

/// Where records go.
enum Sink {
    /// Standard error, chained but unsigned.
    Stderr(Mutex<Chain>),
    /// The audit directory.
    Dir(Arc<FileLog>),
}

/// The audit writer every part of the server records through.
pub struct Audit {
    sink: Sink,
    redactor: Option<Arc<Redactor>>,
    max_value_bytes: usize,
    /// The collectors records are shipped to.
    shipping: Vec<Arc<ship::ShipStatus>>,
    /// Stops the shippers.
    stop: tokio_util::sync::CancellationToken,
    /// Read every record written.
    observers: Vec<Arc<dyn Observer>>,
}

impl Audit {
    /// Opens the sink `settings` describe; `redactor` masks injected
    /// credentials wherever they appear in a record.
    pub fn open(
        settings: &AuditSettings,
        redactor: Option<Arc<Redactor>>,
        observers: Vec<Arc<dyn Observer>>,
    ) -> Result<Self, AuditError> {
        let stop = tokio_util::sync::CancellationToken::new();
        let mut shipping = Vec::new();
        let sink = match &settings.dir {
            None => Sink::Stderr(Mutex::new(Chain::genesis())),
            Some(dir) => {
                let signer = settings
                    .signing_key_file
                    .as_deref()
                    .map(signing::Signer::load)
                    .transpose()
                    .map_err(|e| AuditError::Open(e.to_string()))?;
                let log = FileLog::open(settings.clone(), signer)?;
                if let Some(syslog) = &settings.syslog {
                    let target =
                        ship::Target::Syslog(ship::syslog::SyslogSink::new(syslog.clone()));
                    shipping.push(ship::start(dir.clone(), target, stop.clone()));
                }
                if let Some(otlp) = &settings.otlp {
                    let sink = ship::otlp::OtlpSink::new(otlp.clone()).map_err(AuditError::Open)?;
                    shipping.push(ship::start(
                        dir.clone(),
                        ship::Target::Otlp(sink),
                        stop.clone(),
                    ));
                }
                Sink::Dir(log)
            }
        };
        Ok(Self {
            sink,
            redactor,
            max_value_bytes: settings.max_value_bytes,
            shipping,
            stop,
            observers,
        })
    }

    /// Writes one record. With a directory, the record is written to the
    /// operating system (and, with `fsync = "every"`, to disk) when this
    /// returns; an error means it was not, and the caller fails closed.
    pub fn record(&self, record: &AuditRecord<'_>) -> Result<(), AuditError> {
        self.write(record)?;
        for observer in &self.observers {
            for alert in observer.observe(record) {
                self.raise(&alert);
            }
        }
        Ok(())
    }

    /// Records an alert (which observers see too, so it is counted).
    fn raise(&self, alert: &Alert) {
        let mut record = AuditRecord::new(EventKind::Alert);
        record.data = Some(serde_json::json!({ "kind": alert.kind }));
        record.severity = Some(alert.severity);
        record.client = alert.client.as_deref();
        record.tool = alert.tool.as_deref();
        record.detail = Some(&alert.detail);
        tracing::warn!(target: "stockade::alert", kind = alert.kind, "{}", alert.detail);
        if let Err(err) = self.write(&record) {
            tracing::error!(target: "stockade::auditing", "{err}");
        }
        for observer in &self.observers {
            // An alert raises no further alerts.
            let _ = observer.observe(&record);
        }
    }

    /// Writes one record to the sink.
    fn write(&self, record: &AuditRecord<'_>) -> Result<(), AuditError> {
        let body = serde_json::to_string(record).map_err(|e| AuditError::Write {
            file: "(record)".into(),
            reason: e.to_string(),
        })?;
        let body = match self
            .redactor
            .as_ref()
            .and_then(|r| r.scrubber().scrub(body.as_bytes()))
        {
            Some(scrubbed) => String::from_utf8_lossy(&scrubbed).into_owned(),
            None => body,
        };
        let ts = chain::now();
        match &self.sink {
            Sink::Dir(log) => log.append(&ts, &body),
            Sink::Stderr(chain) => {
                let mut chain = chain.lock().unwrap_or_else(|p| p.into_inner());
                let sealed = chain.seal(&ts, &body);
                // With JSON logs every stderr line stays one JSON object.
                let (prefix, suffix) = if crate::logging::is_json() {
                    (
                        "{\"level\":\"AUDIT\",\"target\":\"stockade::audit\",\"record\":",
                        "}\n",
                    )
                } else {
                    ("stockade::audit: ", "\n")
                };
                let mut line =
                    String::with_capacity(prefix.len() + sealed.line.len() + suffix.len());
                line.push_str(prefix);
                line.push_str(&sealed.line);
                line.push_str(suffix);
                // Standard error is the fallback sink: a failed write there
                // has nowhere else to go.
                let _ = std::io::stderr().lock().write_all(line.as_bytes());
                chain.advance(&sealed);
                Ok(())
            }
        }
    }

    /// Records `record`; a failure is logged, for events that go ahead
    /// whether or not they are recorded (a refusal, a shutdown).
    pub fn record_or_log(&self, record: &AuditRecord<'_>) {
        if let Err(err) = self.record(record) {
            tracing::error!(target: "stockade::auditing", "{err}");
        }
    }

    /// `arguments` as a record keeps them (see [`mask`]).
    pub fn mask_arguments(&self, arguments: &Value, schema: &Value) -> Value {
        let scrubber = self.redactor.as_ref().map(|r| r.scrubber());
        mask::Masking {
            scrubber: scrubber.as_deref(),
            max_value_bytes: self.max_value_bytes,
        }
        .mask(arguments, schema)
    }

    /// The shippers, for readiness and metrics.
    pub fn shipping(&self) -> &[Arc<ship::ShipStatus>] {
        &self.shipping
    }

    /// Closes the log with a final checkpoint and stops the shippers
    /// (what they have not sent is sent from the files at the next start).
    pub fn close(&self) {
        self.stop.cancel();
        if let Sink::Dir(log) = &self.sink
            && let Err(err) = log.close()
        {
            tracing::error!(target: "stockade::auditing", "{err}");
        }
    }

    /// The next record number the log will write.
    pub fn next_seq(&self) -> u64 {
        match &self.sink {
            Sink::Stderr(chain) => chain.lock().unwrap_or_else(|p| p.into_inner()).next_seq,
            Sink::Dir(log) => log.next_seq(),
        }
    }

    /// Where records go and whether they can be written, for readiness:
    /// `Err` names why not.
    pub fn health(&self) -> Result<String, String> {
        match &self.sink {
            Sink::Stderr(_) => Ok("standard error".into()),
            Sink::Dir(log) => match log.state() {
                (dir, None) => Ok(dir.display().to_string()),
                (dir, Some(reason)) => Err(format!("{}: {reason}", dir.display())),
            },
        }
    }
}
