//! Prometheus metrics, counted from the audit records as they are written
//! (so a metric and the record it counts never disagree), plus gauges read
//! when scraped.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::audit::{Alert, AuditRecord, EventKind, Observer};

/// Egress destinations counted apart; past this many, the rest count as
/// `other` (a label per destination must not grow without bound).
const MAX_DESTINATIONS: usize = 256;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ToolOutcome {
    tool: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ToolLabel {
    tool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabel {
    rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DestinationLabel {
    destination: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AlertLabel {
    kind: String,
    severity: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShipperLabel {
    shipper: String,
}

/// What the scrape reads from the running server.
pub struct Snapshot {
    /// Sandbox slots in use and in all.
    pub slots: (usize, usize),
    /// Whether the audit sink can write.
    pub audit_ok: bool,
    /// Whether the secret backend answers (`None`: none configured).
    pub secrets_ok: Option<bool>,
    /// Per shipper: records not yet delivered, and whether it is up.
    pub shipping: Vec<(&'static str, u64, bool)>,
}

/// Every metric Stockade exports.
pub struct Metrics {
    registry: Registry,
    calls: Family<ToolOutcome, Counter>,
    latency: Family<ToolLabel, Histogram>,
    fuel: Family<ToolLabel, Counter>,
    limits: Family<KindLabel, Counter>,
    denials: Family<RuleLabel, Counter>,
    auth_failures: Family<KindLabel, Counter>,
    egress: Family<DestinationLabel, Counter>,
    secret_failures: Counter,
    alerts: Family<AlertLabel, Counter>,
    records: Counter,
    slots_in_use: Gauge,
    slots: Gauge,
    audit_up: Gauge,
    secrets_up: Gauge,
    spool_backlog: Family<ShipperLabel, Gauge>,
    shipper_up: Family<ShipperLabel, Gauge>,
    destinations: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl Metrics {
    /// Every metric at zero.
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("stockade");
        let calls = Family::<ToolOutcome, Counter>::default();
        let latency = Family::<ToolLabel, Histogram>::new_with_constructor(|| {
            Histogram::new([0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0])
        });
        let fuel = Family::<ToolLabel, Counter>::default();
        let limits = Family::<KindLabel, Counter>::default();
        let denials = Family::<RuleLabel, Counter>::default();
        let auth_failures = Family::<KindLabel, Counter>::default();
        let egress = Family::<DestinationLabel, Counter>::default();
        let secret_failures = Counter::default();
        let alerts = Family::<AlertLabel, Counter>::default();
        let records = Counter::default();
        let slots_in_use = Gauge::default();
        let slots = Gauge::default();
        let audit_up = Gauge::default();
        let secrets_up = Gauge::default();
        let spool_backlog = Family::<ShipperLabel, Gauge>::default();
        let shipper_up = Family::<ShipperLabel, Gauge>::default();
        registry.register(
            "calls",
            "Tool calls finished, by tool and outcome",
            calls.clone(),
        );
        registry.register(
            "call_duration_seconds",
            "Wall-clock time of finished calls",
            latency.clone(),
        );
        registry.register("fuel", "Fuel burnt by calls", fuel.clone());
        registry.register(
            "limit_hits",
            "Calls ended by a limit, by kind",
            limits.clone(),
        );
        registry.register(
            "denials",
            "Calls refused before running, by rule",
            denials.clone(),
        );
        registry.register(
            "auth_failures",
            "HTTP requests whose credentials were refused, by reason",
            auth_failures.clone(),
        );
        registry.register(
            "egress_requests",
            "Calls that contacted a destination, by destination",
            egress.clone(),
        );
        registry.register(
            "secret_backend_failures",
            "Secrets the backend could not give",
            secret_failures.clone(),
        );
        registry.register(
            "alerts",
            "Alerts raised, by kind and severity",
            alerts.clone(),
        );
        registry.register("audit_records", "Audit records written", records.clone());
        registry.register(
            "sandbox_slots_in_use",
            "Sandbox slots held by calls",
            slots_in_use.clone(),
        );
        registry.register(
            "sandbox_slots",
            "Sandbox slots in all (server.max_concurrent_calls)",
            slots.clone(),
        );
        registry.register(
            "audit_up",
            "1 when the audit sink can write",
            audit_up.clone(),
        );
        registry.register(
            "secret_backend_up",
            "1 when the secret backend answers (absent without one)",
            secrets_up.clone(),
        );
        registry.register(
            "audit_spool_backlog",
            "Audit records not yet delivered, by shipper",
            spool_backlog.clone(),
        );
        registry.register(
            "audit_shipper_up",
            "1 when the collector takes records",
            shipper_up.clone(),
        );
        Arc::new(Self {
            registry,
            calls,
            latency,
            fuel,
            limits,
            denials,
            auth_failures,
            egress,
            secret_failures,
            alerts,
            records,
            slots_in_use,
            slots,
            audit_up,
            secrets_up,
            spool_backlog,
            shipper_up,
            destinations: std::sync::Mutex::new(std::collections::HashSet::new()),
        })
    }

    /// The Prometheus text exposition, with the gauges read from `now`.
    pub fn render(&self, now: &Snapshot) -> String {
        self.slots_in_use.set(now.slots.0 as i64);
        self.slots.set(now.slots.1 as i64);
        self.audit_up.set(i64::from(now.audit_ok));
        if let Some(up) = now.secrets_ok {
            self.secrets_up.set(i64::from(up));
        }
        for (name, backlog, up) in &now.shipping {
            let label = ShipperLabel {
                shipper: (*name).to_owned(),
            };
            self.spool_backlog
                .get_or_create(&label)
                .set(*backlog as i64);
            self.shipper_up.get_or_create(&label).set(i64::from(*up));
        }
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// `destination`, or `other` once too many have been seen.
    fn destination(&self, destination: &str) -> String {
        let mut seen = self.destinations.lock().unwrap_or_else(|p| p.into_inner());
        if seen.contains(destination) || seen.len() < MAX_DESTINATIONS {
            seen.insert(destination.to_owned());
            destination.to_owned()
        } else {
            "other".into()
        }
    }
}

impl Observer for Metrics {
    fn observe(&self, record: &AuditRecord<'_>) -> Vec<Alert> {
        self.records.inc();
        let class = || record.error_class.unwrap_or("none").to_owned();
        let tool = || ToolLabel {
            tool: record.tool.unwrap_or_default().to_owned(),
        };
        match record.event {
            EventKind::CallFinished => {
                let outcome = record.outcome.unwrap_or_default();
                self.calls
                    .get_or_create(&ToolOutcome {
                        tool: tool().tool,
                        outcome: outcome.to_owned(),
                    })
                    .inc();
                if let Some(ms) = record.duration_ms {
                    self.latency
                        .get_or_create(&tool())
                        .observe(ms as f64 / 1000.0);
                }
                self.fuel
                    .get_or_create(&tool())
                    .inc_by(record.fuel.unwrap_or(0));
                if outcome == "limited" {
                    self.limits
                        .get_or_create(&KindLabel { kind: class() })
                        .inc();
                }
                for destination in record.egress {
                    let destination = self.destination(destination);
                    self.egress
                        .get_or_create(&DestinationLabel { destination })
                        .inc();
                }
            }
            EventKind::CallDenied => {
                if record.outcome == Some("limited") {
                    self.limits
                        .get_or_create(&KindLabel { kind: class() })
                        .inc();
                }
                self.denials
                    .get_or_create(&RuleLabel { rule: class() })
                    .inc();
            }
            EventKind::AuthFailed => {
                // Failures past the per-peer record rate ride on the next record.
                let suppressed = record
                    .data
                    .as_ref()
                    .and_then(|d| d.get("suppressed"))
                    .and_then(|n| n.as_u64())
                    .unwrap_or(0);
                self.auth_failures
                    .get_or_create(&KindLabel { kind: class() })
                    .inc_by(1 + suppressed);
            }
            EventKind::SecretBackendFailed => {
                self.secret_failures.inc();
            }
            EventKind::Alert => {
                let kind = record
                    .data
                    .as_ref()
                    .and_then(|d| d.get("kind"))
                    .and_then(|k| k.as_str())
                    .unwrap_or_default()
                    .to_owned();
                self.alerts
                    .get_or_create(&AlertLabel {
                        kind,
                        severity: record.severity.unwrap_or_default().to_owned(),
                    })
                    .inc();
            }
            _ => {}
        }
        Vec::new()
    }
}
