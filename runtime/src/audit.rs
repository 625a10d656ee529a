//! Audit: one structured record per event, written to the log under the
//! `stockade::audit` target. (The tamper-evident, hash-chained sink plugs
//! in here.)

use std::sync::Arc;

use serde::Serialize;
use stockade_host_api::CallerIdentity;

/// What a record is about.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A tool list was served.
    List,
    /// A call ran (whatever its outcome).
    Call,
    /// Policy refused a call before it ran.
    CallDenied,
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

/// One audit record.
#[derive(Debug, Serialize)]
pub struct AuditRecord<'a> {
    /// Event kind.
    pub event: EventKind,
    /// Correlation id shared by every record and log line of one request;
    /// the client gets it in the result's `_meta`.
    pub correlation: &'a str,
    /// The connection the request came on.
    pub session: Option<&'a str>,
    /// The JSON-RPC id of the request, as text.
    pub request_id: Option<&'a str>,
    /// The MCP protocol version of the request.
    pub protocol: Option<&'a str>,
    /// Client identity.
    pub client: &'a str,
    /// User identity.
    pub user: Option<&'a str>,
    /// Tool name, where there is one.
    pub tool: Option<&'a str>,
    /// `ok`, `tool_error`, `limit`, `denied`, `invalid_arguments`, ...
    pub outcome: &'a str,
    /// Wall-clock time in milliseconds.
    pub duration_ms: u64,
    /// Fuel burnt.
    pub fuel: u64,
    /// Bytes of output returned.
    pub output_bytes: u64,
    /// Destinations contacted.
    pub egress: &'a [String],
    /// What the host refused during the call, by rule.
    pub refusals: &'a [String],
    /// Instruction-like phrases found in what the tool returned.
    pub flags: &'a [&'static str],
    /// Refusals and limit messages.
    pub detail: Option<&'a str>,
}

impl<'a> AuditRecord<'a> {
    /// A record with the caller filled in and everything else empty.
    pub fn new(
        event: EventKind,
        correlation: &'a str,
        caller: &'a CallerIdentity,
        outcome: &'a str,
    ) -> Self {
        Self {
            event,
            correlation,
            session: None,
            request_id: None,
            protocol: None,
            client: &caller.client,
            user: caller.user.as_deref(),
            tool: None,
            outcome,
            duration_ms: 0,
            fuel: 0,
            output_bytes: 0,
            egress: &[],
            refusals: &[],
            flags: &[],
            detail: None,
        }
    }
}

impl<'a> AuditRecord<'a> {
    /// The record with the session, JSON-RPC id and protocol of `request`.
    pub fn with_request(mut self, request: &'a RequestInfo) -> Self {
        self.session = Some(&request.session);
        self.request_id = Some(&request.id);
        self.protocol = request.protocol.as_deref();
        self
    }
}

/// Writes one record.
pub fn record(record: &AuditRecord<'_>) {
    match serde_json::to_string(record) {
        Ok(json) => tracing::info!(target: "stockade::audit", "{json}"),
        Err(err) => tracing::error!(target: "stockade::audit", "cannot encode audit record: {err}"),
    }
}
