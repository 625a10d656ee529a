//! OpenTelemetry logs over OTLP/HTTP (protobuf): one log record per audit
//! record, its body the audit line whole, its attributes the record number
//! and event, its time the record's own.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, InstrumentationScope, KeyValue, any_value::Value as AnyValueKind,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message as _;
use serde_json::Value;

use super::spool::Spooled;
use crate::audit::settings::OtlpSettings;

/// Longest an export may take before the endpoint counts as down.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// An OTLP/HTTP logs endpoint.
pub struct OtlpSink {
    settings: OtlpSettings,
    client: reqwest::Client,
}

fn text(value: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(AnyValueKind::StringValue(value.to_owned())),
    })
}

fn attribute(key: &str, value: Option<AnyValue>) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value,
        ..Default::default()
    }
}

impl OtlpSink {
    /// A sink for `settings`.
    pub fn new(settings: OtlpSettings) -> Result<Self, String> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(EXPORT_TIMEOUT);
        if let Some(path) = &settings.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| format!("audit.otlp.ca_file {}: {e}", path.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("audit.otlp.ca_file {}: {e}", path.display()))?;
            builder = builder.tls_certs_only(certs);
        }
        let client = builder
            .build()
            .map_err(|e| format!("cannot build the OTLP HTTP client: {e}"))?;
        Ok(Self { settings, client })
    }

    /// Exports `records`; only a 2xx answer counts as delivered.
    pub async fn deliver(&mut self, records: &[Spooled]) -> Result<(), String> {
        let log_records = records.iter().map(log_record).collect();
        let request = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![attribute("service.name", text("stockade"))],
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: "stockade.audit".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..Default::default()
                    }),
                    log_records,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let endpoint = &self.settings.endpoint;
        let response = self
            .client
            .post(endpoint)
            .header(http::header::CONTENT_TYPE, "application/x-protobuf")
            .body(request.encode_to_vec())
            .send()
            .await
            .map_err(|e| format!("OTLP {endpoint}: {e}"))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("OTLP {endpoint}: HTTP {}", response.status()))
        }
    }
}

/// One audit line as an OpenTelemetry log record.
fn log_record(record: &Spooled) -> LogRecord {
    let parsed: Value = serde_json::from_str(&record.line).unwrap_or_default();
    let field = |name: &str| parsed.get(name).and_then(Value::as_str).unwrap_or_default();
    let time =
        time::OffsetDateTime::parse(field("ts"), &time::format_description::well_known::Rfc3339)
            .map(|t| t.unix_timestamp_nanos() as u64)
            .unwrap_or_default();
    let (number, name) = match super::level(&parsed) {
        super::Level::Critical => (21, "FATAL"),
        super::Level::Warning => (13, "WARN"),
        super::Level::Info => (9, "INFO"),
    };
    LogRecord {
        time_unix_nano: time,
        observed_time_unix_nano: time,
        severity_number: number,
        severity_text: name.into(),
        body: text(&record.line),
        attributes: vec![
            attribute(
                "stockade.audit.seq",
                Some(AnyValue {
                    value: Some(AnyValueKind::IntValue(record.seq as i64)),
                }),
            ),
            attribute("event.name", text(field("event"))),
        ],
        ..Default::default()
    }
}
