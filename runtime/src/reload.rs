//! Reload: SIGHUP or `stockade admin reload` re-reads the config and every
//! manifest, validates and lints them completely and checks them against
//! the lock; only a configuration with no problem at all replaces the one
//! being served, in one atomic swap (calls already running finish on the
//! version they started with; rate limits and kill switches live outside
//! the registry and carry over). A bad configuration keeps the old one
//! serving, and the answer says why. Every accepted configuration is kept
//! as a numbered version (see [`crate::versions`]).
//!
//! Settings of the process itself (listeners, authentication, audit,
//! Vault, the sandbox's pool) take effect at the next start; a reload
//! applies the tool set and the lock.

use std::path::PathBuf;
use std::sync::Arc;

use stockade_host_api::Sandbox;

use crate::audit::{Audit, AuditRecord, EventKind};
use crate::call::CallPath;
use crate::config::StockadeConfig;
use crate::policy::Limiters;
use crate::registry::Registry;
use crate::secrets::Backend;
use crate::versions::VersionStore;

/// What loading tools needs besides the config.
pub struct ToolSources<'a> {
    /// The sandbox that compiles and runs them.
    pub sandbox: &'a Sandbox,
    /// Where their secrets come from.
    pub secrets: Option<&'a Arc<Backend>>,
    /// The audit trail, when loading is recorded.
    pub audit: Option<&'a Arc<Audit>>,
    /// Limiters kept across reloads.
    pub limiters: &'a Limiters,
    /// Whether the lock is enforced (not when writing one).
    pub enforce_lock: bool,
}

/// Loads every tool `config` names: registry and every problem found
/// (manifests that did not parse, components refused, lint findings,
/// drifts from the lock). A lock that cannot be used is an error.
pub async fn load_tools(
    config: &StockadeConfig,
    manifest_errors: &[crate::config::ConfigError],
    sources: &ToolSources<'_>,
) -> anyhow::Result<(Registry, Vec<String>)> {
    let (mut registry, load_errors) = Registry::load(
        sources.sandbox,
        &config.tools,
        sources.secrets,
        sources.audit,
        sources.limiters,
    )
    .await;
    let mut problems: Vec<String> = manifest_errors
        .iter()
        .map(ToString::to_string)
        .chain(load_errors.iter().map(ToString::to_string))
        .collect();
    if sources.enforce_lock {
        problems.extend(crate::lock::enforce_configured(
            &config.lock,
            &mut registry,
            sources.audit.map(|a| a.as_ref()),
        )?);
    }
    Ok((registry, problems))
}

/// Everything a reload needs from the running server.
pub struct Reloader {
    /// The config file.
    pub config_path: PathBuf,
    /// The sandbox (its pool is sized at start).
    pub sandbox: Arc<Sandbox>,
    /// The secret backend of the start.
    pub secrets: Option<Arc<Backend>>,
    /// The audit trail.
    pub audit: Arc<Audit>,
    /// The call path whose registry is swapped.
    pub path: Arc<CallPath>,
    /// Limiters kept across reloads.
    pub limiters: Arc<Limiters>,
    /// The largest `limits.memory` the pool reserved at start.
    pub max_memory_bytes: u64,
    /// Where accepted configurations are kept.
    pub versions: VersionStore,
    /// What the process kept at start: a reload may not need more.
    pub confinement: crate::confine::plan::Kept,
    /// One reload at a time.
    pub busy: tokio::sync::Mutex<()>,
}

impl Reloader {
    /// Reloads, audits the outcome, and says what happened: the version
    /// now served, or why the old one still is.
    pub async fn reload(&self, by: &str, reason: Option<&str>) -> Result<String, String> {
        let _one = self.busy.lock().await;
        let outcome = self.try_reload().await;
        let mut record = AuditRecord::new(EventKind::Reload);
        let detail = match &outcome {
            Ok(done) => done.clone(),
            Err(why) => why.clone(),
        };
        record.outcome = Some(if outcome.is_ok() {
            "succeeded"
        } else {
            "failed"
        });
        record.detail = Some(&detail);
        record.data = Some(serde_json::json!({ "by": by, "reason": reason }));
        self.audit.record_or_log(&record);
        match &outcome {
            Ok(done) => tracing::info!(target: "stockade::reload", by, "{done}"),
            Err(why) => tracing::error!(target: "stockade::reload", by, "{why}"),
        }
        outcome
    }

    async fn try_reload(&self) -> Result<String, String> {
        let refuse = |why: String| {
            format!("reload refused, the previous configuration keeps serving: {why}")
        };
        let (config, manifest_errors) =
            StockadeConfig::load(&self.config_path).map_err(|e| refuse(e.to_string()))?;
        if let Some(need) = self
            .confinement
            .shortfall(&self.config_path, &config, &manifest_errors)
        {
            return Err(refuse(format!(
                "it needs {need}, which this process gave up at start (confinement); restart to serve it"
            )));
        }
        if let Some(manifest) = config
            .tools
            .iter()
            .find(|m| m.limits.memory_bytes > self.max_memory_bytes)
        {
            return Err(refuse(format!(
                "{}: limits.memory is more than this process reserved at start ({} MiB); restart to serve it",
                manifest.path.display(),
                self.max_memory_bytes >> 20
            )));
        }
        let sources = ToolSources {
            sandbox: &self.sandbox,
            secrets: self.secrets.as_ref(),
            audit: Some(&self.audit),
            limiters: &self.limiters,
            enforce_lock: true,
        };
        let (registry, problems) = load_tools(&config, &manifest_errors, &sources)
            .await
            .map_err(|e| refuse(format!("{e:#}")))?;
        if !problems.is_empty() {
            return Err(refuse(problems.join("; ")));
        }
        let version = self
            .versions
            .record(&self.config_path, &config, &registry)
            .map_err(|e| refuse(format!("the version could not be kept: {e}")))?;
        let tools = registry.len();
        self.path.swap_registry(Arc::new(registry));
        Ok(format!("reloaded: version {version}, {tools} tools"))
    }
}

impl crate::control::Reloading for Reloader {
    fn reload<'a>(
        &'a self,
        by: &'a str,
        reason: Option<&'a str>,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<String, String>> + Send + 'a>> {
        Box::pin(Reloader::reload(self, by, reason))
    }
}

/// Reloads on every SIGHUP until the process ends.
pub fn reload_on_hangup(reloader: Arc<Reloader>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; reload with `stockade admin reload`");
        return;
    };
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            let _ = reloader.reload("SIGHUP", None).await;
        }
    });
}
