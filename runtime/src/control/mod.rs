//! Operator control, the kill switch: disable a tool, revoke a client, or
//! lock everything down, effective for the next call without a restart,
//! and stopping the calls already running. The switches persist in the
//! control directory (see [`store`]); `stockade admin` changes them there
//! and tells every server process sharing the directory through its
//! control socket (see [`socket`]); each process then re-reads them,
//! stops what they now forbid, audits the change with who made it, and
//! tells its connected clients that the tool list changed.
//!
//! No admin operation is reachable through MCP: only the socket (owner
//! only) and the admin HTTP listener (admin keys) lead here.

pub mod running;
pub mod socket;
pub mod store;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use stockade_host_api::CallerIdentity;

use crate::audit::{Audit, AuditRecord, EventKind};
use crate::policy::Denial;
use running::RunningCalls;
use store::SwitchStore;

/// `[control]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawControl {
    dir: Option<PathBuf>,
}

/// `[control]`, checked.
#[derive(Debug, Clone)]
pub struct ControlSettings {
    /// The control directory: switches, their lock, and one socket per
    /// serving process.
    pub dir: PathBuf,
}

impl RawControl {
    /// Resolves the directory against the config's (default
    /// `.stockade/control` there).
    pub fn check(&self, base: &Path) -> ControlSettings {
        ControlSettings {
            dir: base.join(
                self.dir
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(".stockade/control")),
            ),
        }
    }
}

/// Why a switch could not be read, changed or announced.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The state file or directory.
    #[error("{path}: {reason}")]
    Store {
        /// The file or directory.
        path: String,
        /// What went wrong.
        reason: String,
    },
}

/// What operators have switched off.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Switches {
    /// Tools no one may call.
    #[serde(default)]
    pub disabled_tools: BTreeSet<String>,
    /// Clients whose every request is refused.
    #[serde(default)]
    pub revoked_clients: BTreeSet<String>,
    /// Everything refused but health checks.
    #[serde(default)]
    pub lockdown: bool,
}

impl Switches {
    /// Why these switches refuse `client` the use of `tool` (or, with
    /// `None`, a tool list): lockdown first, then the client, then the tool.
    pub fn forbid(&self, client: &str, tool: Option<&str>) -> Option<Denial> {
        if self.lockdown {
            return Some(Denial::Lockdown);
        }
        if self.revoked_clients.contains(client) {
            return Some(Denial::ClientRevoked(client.to_owned()));
        }
        match tool {
            Some(tool) if self.disabled_tools.contains(tool) => {
                Some(Denial::ToolDisabled(tool.to_owned()))
            }
            _ => None,
        }
    }
}

/// One change an operator makes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", content = "target", rename_all = "kebab-case")]
pub enum Operation {
    /// Refuse the tool's calls and hide it.
    DisableTool(String),
    /// Serve the tool again.
    EnableTool(String),
    /// Refuse everything from the client.
    RevokeClient(String),
    /// Serve the client again.
    RestoreClient(String),
    /// Refuse everything (`true`) or stop doing so.
    Lockdown(bool),
    /// Re-read the config and manifests.
    Reload,
    /// Return to a kept configuration version (the one served before the
    /// current one when `None`), then reload.
    Rollback(Option<u32>),
    /// Let a call waiting for out-of-band approval run.
    Approve(String),
    /// Refuse a call waiting for out-of-band approval.
    Deny(String),
    /// List the calls waiting for out-of-band approval.
    Waiting,
}

impl Operation {
    /// Applies the change to `switches`.
    pub fn apply(&self, switches: &mut Switches) {
        match self {
            Self::DisableTool(tool) => {
                switches.disabled_tools.insert(tool.clone());
            }
            Self::EnableTool(tool) => {
                switches.disabled_tools.remove(tool);
            }
            Self::RevokeClient(client) => {
                switches.revoked_clients.insert(client.clone());
            }
            Self::RestoreClient(client) => {
                switches.revoked_clients.remove(client);
            }
            Self::Lockdown(on) => switches.lockdown = *on,
            Self::Reload | Self::Rollback(_) | Self::Approve(_) | Self::Deny(_) | Self::Waiting => {
            }
        }
    }

    /// The operation's name, as the command line and the audit spell it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::DisableTool(_) => "disable-tool",
            Self::EnableTool(_) => "enable-tool",
            Self::RevokeClient(_) => "revoke-client",
            Self::RestoreClient(_) => "restore-client",
            Self::Lockdown(true) => "lockdown-on",
            Self::Lockdown(false) => "lockdown-off",
            Self::Reload => "reload",
            Self::Rollback(_) => "rollback",
            Self::Approve(_) => "approve",
            Self::Deny(_) => "deny",
            Self::Waiting => "waiting",
        }
    }

    /// The tool or client it concerns.
    pub fn target(&self) -> Option<&str> {
        match self {
            Self::DisableTool(name)
            | Self::EnableTool(name)
            | Self::RevokeClient(name)
            | Self::RestoreClient(name)
            | Self::Approve(name)
            | Self::Deny(name) => Some(name),
            Self::Lockdown(_) | Self::Reload | Self::Rollback(_) | Self::Waiting => None,
        }
    }

    /// Whether it changes the switches (rather than the configuration or
    /// a waiting call).
    pub fn is_switch(&self) -> bool {
        matches!(
            self,
            Self::DisableTool(_)
                | Self::EnableTool(_)
                | Self::RevokeClient(_)
                | Self::RestoreClient(_)
                | Self::Lockdown(_)
        )
    }
}

/// What reloads the configuration; the server provides it (the control
/// module itself knows nothing of configs and registries).
pub trait Reloading: Send + Sync {
    /// Reloads; says what is served now, or why the old configuration
    /// still is.
    fn reload<'a>(
        &'a self,
        by: &'a str,
        reason: Option<&'a str>,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<String, String>> + Send + 'a>>;
}

/// What a server is told of a change: the operation, who made it and why.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notice {
    /// The change.
    pub operation: Operation,
    /// Who made it, as the channel it came through knows them.
    pub by: String,
    /// The bare identity behind `by` (a user or key name), which may not
    /// approve its own calls.
    #[serde(default)]
    pub who: String,
    /// The operator's reason, if given.
    #[serde(default)]
    pub reason: Option<String>,
}

/// One process's view of the switches, and the calls they can stop.
pub struct Control {
    store: SwitchStore,
    switches: RwLock<Arc<Switches>>,
    /// The calls running in this process.
    pub running: RunningCalls,
    /// Counts tool-list changes; MCP sessions watch it.
    list_version: tokio::sync::watch::Sender<u64>,
    audit: Arc<Audit>,
    /// Set once the server can reload.
    reloader: std::sync::OnceLock<Arc<dyn Reloading>>,
    /// Calls waiting for a person, and the sealing of 2026 approvals.
    pub approvals: crate::approval::Approvals,
}

impl Control {
    /// Opens the control directory and reads the switches as they were
    /// left (a file that cannot be read stops the server: it might hold a
    /// kill switch).
    pub fn open(
        settings: &ControlSettings,
        approval: crate::approval::ApprovalSettings,
        audit: Arc<Audit>,
    ) -> Result<Self, ControlError> {
        let store = SwitchStore::open(&settings.dir)?;
        let switches = store.load()?;
        let approvals =
            crate::approval::Approvals::new(approval).map_err(|reason| ControlError::Store {
                path: settings.dir.display().to_string(),
                reason,
            })?;
        Ok(Self {
            store,
            switches: RwLock::new(Arc::new(switches)),
            running: RunningCalls::default(),
            list_version: tokio::sync::watch::channel(0).0,
            audit,
            reloader: std::sync::OnceLock::new(),
            approvals,
        })
    }

    /// The switches in force.
    pub fn switches(&self) -> Arc<Switches> {
        self.switches
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The control directory.
    pub fn dir(&self) -> &Path {
        self.store.dir()
    }

    /// Why `caller` may not use `tool` (or, with `None`, list tools) now.
    pub fn refusal(&self, caller: &CallerIdentity, tool: Option<&str>) -> Option<Denial> {
        self.switches
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .forbid(&caller.client, tool)
    }

    /// A receiver that changes whenever the tool list may have.
    pub fn list_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.list_version.subscribe()
    }

    /// Re-reads the switches after `notice`: audits the change, stops the
    /// running calls they now forbid and tells sessions the tool list
    /// changed. Returns how many calls were stopped.
    pub fn refresh(&self, notice: &Notice) -> Result<usize, ControlError> {
        let now = Arc::new(self.store.load()?);
        let mut record = AuditRecord::new(EventKind::Control);
        record.tool = match &notice.operation {
            Operation::DisableTool(t) | Operation::EnableTool(t) => Some(t),
            _ => None,
        };
        record.client = match &notice.operation {
            Operation::RevokeClient(c) | Operation::RestoreClient(c) => Some(c),
            _ => None,
        };
        record.outcome = Some("succeeded");
        record.severity = Some(match notice.operation {
            Operation::Lockdown(true) => "critical",
            _ => "warning",
        });
        record.detail = notice.reason.as_deref();
        record.data = Some(serde_json::json!({
            "operation": notice.operation.name(),
            "by": notice.by,
            "switches": &*now,
        }));
        // Fail closed the other way round: a change that cannot be
        // recorded is still applied (a kill switch must work when the
        // audit disk is full), and the failure is logged loudly.
        if let Err(err) = self.audit.record(&record) {
            tracing::error!(target: "stockade::control", "kill switch applied but not audited: {err}");
        }
        *self.switches.write().unwrap_or_else(|p| p.into_inner()) = now.clone();
        let stopped = self.running.stop_where(|tool, client| {
            now.forbid(client, Some(tool))
                .map(|denial| denial.to_string())
        });
        tracing::warn!(
            target: "stockade::control",
            operation = notice.operation.name(),
            target_name = notice.operation.target(),
            by = %notice.by,
            stopped,
            "kill switch changed"
        );
        self.announce();
        Ok(stopped)
    }

    /// Lets notices reload the configuration through `reloader`.
    pub fn set_reloader(&self, reloader: Arc<dyn Reloading>) {
        let _ = self.reloader.set(reloader);
    }

    /// Acts on `notice`: a switch change is re-read from the store, a
    /// reload reloads. Returns the calls stopped and what was done.
    pub async fn handle(&self, notice: &Notice) -> Result<(usize, String), String> {
        if notice.operation.is_switch() {
            let stopped = self.refresh(notice).map_err(|e| e.to_string())?;
            return Ok((stopped, "applied".into()));
        }
        match (&notice.operation, self.reloader.get()) {
            (Operation::Reload, Some(reloader)) => reloader
                .reload(&notice.by, notice.reason.as_deref())
                .await
                .map(|done| (0, done)),
            (Operation::Reload, None) => Err("this server cannot reload yet".into()),
            (Operation::Approve(id), _) => self.answer(id, true, notice),
            (Operation::Deny(id), _) => self.answer(id, false, notice),
            (Operation::Waiting, _) => {
                let waiting = self.approvals.waiting();
                Ok((
                    0,
                    if waiting.is_empty() {
                        "no call waits for approval".into()
                    } else {
                        waiting.join("; ")
                    },
                ))
            }
            _ => Err(format!(
                "`{}` is done by `stockade admin`, not by a server",
                notice.operation.name()
            )),
        }
    }

    /// Answers a call waiting for approval, and audits the answer.
    fn answer(&self, id: &str, approve: bool, notice: &Notice) -> Result<(usize, String), String> {
        let done = self
            .approvals
            .answer(id, approve, &notice.who, &notice.by)?;
        let mut record = AuditRecord::new(EventKind::Approval);
        record.outcome = Some(if approve { "succeeded" } else { "denied" });
        record.detail = Some(&done);
        record.data = Some(serde_json::json!({
            "decision": if approve { "approved" } else { "denied" },
            "via": "out_of_band",
            "approval": id,
            "by": notice.by,
        }));
        self.audit.record_or_log(&record);
        Ok((0, done))
    }

    /// Tells every session that the tool list may have changed.
    pub fn announce(&self) {
        self.list_version.send_modify(|v| *v += 1);
    }
}

/// Carries out `notice` in `dir`: a switch change is saved (under the
/// store's lock); a rollback writes the kept version's files back and
/// becomes a reload. Then every server process listening there is told.
/// Returns the switches now in force and each process's answer.
pub async fn change(
    dir: &Path,
    notice: &Notice,
) -> Result<(Switches, Vec<socket::Answer>), ControlError> {
    let store = SwitchStore::open(dir)?;
    let mut notice = notice.clone();
    match notice.operation {
        Operation::Reload | Operation::Approve(_) | Operation::Deny(_) | Operation::Waiting => {}
        Operation::Rollback(number) => {
            let versions =
                crate::versions::VersionStore::open(dir).map_err(|e| ControlError::Store {
                    path: e.path.clone(),
                    reason: e.reason.clone(),
                })?;
            let version = versions.restore(number).map_err(|e| ControlError::Store {
                path: e.path,
                reason: e.reason,
            })?;
            let why = format!("rollback to version {}", version.number);
            notice.reason = Some(match notice.reason {
                Some(reason) => format!("{why}: {reason}"),
                None => why,
            });
            notice.operation = Operation::Reload;
        }
        _ => {
            store.update(|s| notice.operation.apply(s))?;
        }
    }
    let answers = socket::tell_all(dir, &notice).await;
    Ok((store.load()?, answers))
}
