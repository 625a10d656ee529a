//! Anomaly alerts (`[alerts]`), raised from the audit records as they are
//! written: the first call of a tool by a client, calls outside the
//! configured hours, a spike of failed or refused calls per client or
//! tool, a burst of egress refusals, and a tool whose component or
//! description changed since the last load. Each is an audit record with
//! a severity, a metric, and optionally a webhook POST.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::audit::{Alert, AuditRecord, EventKind, Observer};
use crate::config::ConfigError;
use crate::units::parse_duration;

/// `[alerts]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlerts {
    #[serde(default)]
    first_use: bool,
    hours: Option<String>,
    error_threshold: Option<u32>,
    egress_denial_threshold: Option<u32>,
    window: Option<String>,
    webhook: Option<String>,
}

/// `[alerts]`, checked.
#[derive(Debug, Clone, Default)]
pub struct AlertSettings {
    /// Alert on the first call of a tool by a client.
    pub first_use: bool,
    /// Working hours, UTC minutes of the day `[from, to)`; calls outside
    /// them alert.
    pub hours: Option<(u32, u32)>,
    /// Failed or refused calls per window, per client and per tool.
    pub error_threshold: Option<u32>,
    /// Egress refusals per window, per client.
    pub egress_denial_threshold: Option<u32>,
    /// The window those thresholds count over.
    pub window: Duration,
    /// Where alerts are POSTed as JSON.
    pub webhook: Option<String>,
}

/// `HH:MM` as minutes of the day.
fn minutes(text: &str) -> Option<u32> {
    let (hours, mins) = text.trim().split_once(':')?;
    let (hours, mins): (u32, u32) = (hours.parse().ok()?, mins.parse().ok()?);
    (hours < 24 && mins < 60).then_some(hours * 60 + mins)
}

impl RawAlerts {
    /// Checks every field.
    pub fn check(
        &self,
        invalid: &dyn Fn(&str, &str) -> ConfigError,
    ) -> Result<AlertSettings, ConfigError> {
        let hours = match &self.hours {
            None => None,
            Some(text) => Some(
                text.split_once('-')
                    .and_then(|(from, to)| Some((minutes(from)?, minutes(to)?)))
                    .ok_or_else(|| invalid("alerts.hours", "UTC hours such as \"08:00-18:00\""))?,
            ),
        };
        let window = match &self.window {
            None => Duration::from_secs(60),
            Some(text) => parse_duration(text)
                .ok()
                .filter(|d| *d >= Duration::from_secs(1))
                .ok_or_else(|| {
                    invalid("alerts.window", "a duration of at least 1s, such as \"1m\"")
                })?,
        };
        for (key, value) in [
            ("alerts.error_threshold", self.error_threshold),
            (
                "alerts.egress_denial_threshold",
                self.egress_denial_threshold,
            ),
        ] {
            if value == Some(0) {
                return Err(invalid(key, "a number of at least 1"));
            }
        }
        if let Some(url) = &self.webhook {
            crate::config::secure_url(
                "alerts.webhook",
                url,
                "https://alerts.internal/stockade",
                invalid,
            )?;
        }
        Ok(AlertSettings {
            first_use: self.first_use,
            hours,
            error_threshold: self.error_threshold,
            egress_denial_threshold: self.egress_denial_threshold,
            window,
            webhook: self.webhook.clone(),
        })
    }
}

/// What alerts remember across restarts (kept beside the audit files).
#[derive(Debug, Default, Serialize, Deserialize)]
struct Remembered {
    /// `(client, tool)` pairs that have called.
    seen: Vec<(String, String)>,
    /// Per tool: component digest and description digest at the last load.
    tools: BTreeMap<String, (String, String)>,
}

/// A count in a window, and whether it already alerted there.
struct Tally {
    started: Instant,
    count: u32,
    fired: bool,
}

/// The alert observer.
pub struct Alerts {
    settings: AlertSettings,
    state_file: Option<PathBuf>,
    seen: Mutex<HashSet<(String, String)>>,
    tallies: Mutex<HashMap<String, Tally>>,
    client: Option<reqwest::Client>,
}

impl Alerts {
    /// Alerts per `settings`, remembering first uses and tool digests in
    /// `state_dir` (the audit directory) when there is one.
    pub fn new(settings: AlertSettings, state_dir: Option<PathBuf>) -> Self {
        let state_file = state_dir.map(|dir| dir.join("alerts.json"));
        let remembered = Self::load(state_file.as_ref());
        let client = settings.webhook.as_ref().and_then(|_| {
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .timeout(Duration::from_secs(5))
                .build()
                .ok()
        });
        Self {
            settings,
            state_file,
            seen: Mutex::new(remembered.seen.into_iter().collect()),
            tallies: Mutex::new(HashMap::new()),
            client,
        }
    }

    fn load(path: Option<&PathBuf>) -> Remembered {
        path.and_then(|p| std::fs::read(p).ok())
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    fn save(&self, update: impl FnOnce(&mut Remembered)) {
        let Some(path) = &self.state_file else {
            return;
        };
        let mut remembered = Self::load(Some(path));
        update(&mut remembered);
        let staged = path.with_extension("json.new");
        let written = serde_json::to_vec(&remembered)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&staged, bytes))
            .and_then(|()| std::fs::rename(&staged, path));
        if let Err(err) = written {
            tracing::warn!(target: "stockade::alert", "cannot save {}: {err}", path.display());
        }
    }

    /// Counts one event under `key`; true when it reaches `threshold` in
    /// the window for the first time.
    fn tally(&self, key: String, threshold: u32) -> bool {
        let mut tallies = self.tallies.lock().unwrap_or_else(|p| p.into_inner());
        let tally = tallies.entry(key).or_insert(Tally {
            started: Instant::now(),
            count: 0,
            fired: false,
        });
        if tally.started.elapsed() >= self.settings.window {
            *tally = Tally {
                started: Instant::now(),
                count: 0,
                fired: false,
            };
        }
        tally.count += 1;
        if tally.count >= threshold && !tally.fired {
            tally.fired = true;
            return true;
        }
        false
    }

    /// POSTs `alert` to the webhook, off the call path.
    fn notify(&self, alert: &Alert) {
        let (Some(url), Some(client)) = (&self.settings.webhook, &self.client) else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let body = serde_json::json!({
            "kind": alert.kind,
            "severity": alert.severity,
            "client": alert.client,
            "tool": alert.tool,
            "detail": alert.detail,
            "ts": crate::audit::chain::now(),
        });
        let request = client
            .post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        let url = url.clone();
        runtime.spawn(async move {
            match request.send().await {
                Ok(response) if response.status().is_success() => {}
                Ok(response) => tracing::warn!(target: "stockade::alert", "webhook {url}: HTTP {}", response.status()),
                Err(err) => tracing::warn!(target: "stockade::alert", "webhook {url}: {err}"),
            }
        });
    }

    fn calls(&self, record: &AuditRecord<'_>, alerts: &mut Vec<Alert>) {
        let client = record.client.unwrap_or_default();
        let tool = record.tool.unwrap_or_default();
        let alert = |kind, severity, detail: String| Alert {
            kind,
            severity,
            client: Some(client.to_owned()),
            tool: Some(tool.to_owned()),
            detail,
        };
        if record.event == EventKind::CallStarted {
            if self.settings.first_use {
                let pair = (client.to_owned(), tool.to_owned());
                let new = self
                    .seen
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(pair.clone());
                if new {
                    self.save(|r| r.seen.push(pair));
                    alerts.push(alert(
                        "first_use",
                        "warning",
                        format!("client `{client}` called tool `{tool}` for the first time"),
                    ));
                }
            }
            if let Some((from, to)) = self.settings.hours {
                let now = time::OffsetDateTime::now_utc();
                let minute = u32::from(now.hour()) * 60 + u32::from(now.minute());
                let inside = if from <= to {
                    (from..to).contains(&minute)
                } else {
                    minute >= from || minute < to
                };
                if !inside && self.tally(format!("hours:{client}"), 1) {
                    alerts.push(alert(
                        "off_hours",
                        "warning",
                        format!("client `{client}` called tool `{tool}` outside alerts.hours"),
                    ));
                }
            }
            return;
        }
        let failed = matches!(record.outcome, Some("failed" | "limited" | "denied"));
        if let Some(threshold) = self.settings.error_threshold
            && failed
        {
            for (key, who) in [
                (format!("client:{client}"), format!("client `{client}`")),
                (format!("tool:{tool}"), format!("tool `{tool}`")),
            ] {
                if self.tally(key, threshold) {
                    alerts.push(alert(
                        "error_spike",
                        "warning",
                        format!("{who}: {threshold} failed or refused calls within alerts.window"),
                    ));
                }
            }
        }
        let egress_refusals = record
            .refusals
            .iter()
            .filter(|r| r.starts_with("egress denied"))
            .count();
        if let Some(threshold) = self.settings.egress_denial_threshold {
            for _ in 0..egress_refusals {
                if self.tally(format!("egress:{client}"), threshold) {
                    alerts.push(alert("egress_denials", "critical", format!("client `{client}`: {threshold} egress refusals within alerts.window (tool `{tool}`)")));
                }
            }
        }
    }

    fn loaded(&self, record: &AuditRecord<'_>, alerts: &mut Vec<Alert>) {
        let Some(tools) = record
            .data
            .as_ref()
            .and_then(|d| d.get("tools"))
            .and_then(Value::as_array)
        else {
            return;
        };
        let text = |tool: &Value, key: &str| {
            tool.get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let now: BTreeMap<String, (String, String)> = tools
            .iter()
            .map(|t| {
                (
                    text(t, "name"),
                    (text(t, "component"), text(t, "description_sha256")),
                )
            })
            .collect();
        let before = Self::load(self.state_file.as_ref()).tools;
        for (name, (component, description)) in &now {
            let Some((old_component, old_description)) = before.get(name) else {
                continue;
            };
            let what = match (old_component != component, old_description != description) {
                (true, true) => "component and description",
                (true, false) => "component",
                (false, true) => "description",
                (false, false) => continue,
            };
            alerts.push(Alert {
                kind: "tool_changed",
                severity: "critical",
                client: None,
                tool: Some(name.clone()),
                detail: format!("tool `{name}`: its {what} changed since the last load"),
            });
        }
        self.save(|r| r.tools = now);
    }
}

impl Observer for Alerts {
    fn observe(&self, record: &AuditRecord<'_>) -> Vec<Alert> {
        let mut alerts = Vec::new();
        match record.event {
            EventKind::CallStarted | EventKind::CallFinished | EventKind::CallDenied => {
                self.calls(record, &mut alerts);
            }
            EventKind::ConfigLoaded => self.loaded(record, &mut alerts),
            EventKind::LockDrift => alerts.push(Alert {
                kind: "lock_drift",
                severity: "critical",
                client: None,
                tool: record.tool.map(str::to_owned),
                detail: record.detail.unwrap_or_default().to_owned(),
            }),
            _ => {}
        }
        for alert in &alerts {
            self.notify(alert);
        }
        alerts
    }
}
