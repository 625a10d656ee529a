//! text-kit's component in a sandbox set up as the demo manifest sets it
//! up: shared by the sandbox rows and the floor with a fresh sandbox.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use stockade_host_api::{
    CallLimits, CallReport, CallerIdentity, EgressPolicy, LoadedComponent, Sandbox,
    SandboxSettings, ToolGrant,
};
use tokio_util::sync::CancellationToken;

/// A sandbox with text-kit loaded under the demo's limits, and the
/// caller its calls are made for.
pub struct DemoSandbox {
    sandbox: Sandbox,
    /// text-kit, compiled.
    component: LoadedComponent,
    /// The demo manifest's limits and no capabilities.
    grant: ToolGrant,
    caller: CallerIdentity,
    never_cancelled: CancellationToken,
}

impl DemoSandbox {
    /// A sandbox whose compiled-component cache is `cache_dir`, with the
    /// component at `wasm` loaded (and checked against `digest`, if
    /// given), calling as `client`.
    pub fn new(cache_dir: &Path, wasm: &Path, digest: Option<&str>, client: &str) -> Result<Self> {
        let settings = SandboxSettings {
            cache_dir: Some(cache_dir.to_owned()),
            max_concurrent_calls: 32,
            ..SandboxSettings::default()
        };
        let sandbox = Sandbox::new(&settings).context("starting the sandbox")?;
        let component = sandbox
            .load(wasm, digest)
            .with_context(|| format!("loading {}", wasm.display()))?;
        let grant = ToolGrant {
            label: "text-kit".into(),
            limits: CallLimits {
                fuel: 200_000_000,
                memory_bytes: 32 << 20,
                timeout: Duration::from_secs(2),
                ..CallLimits::default()
            },
            fs: Vec::new(),
            egress: Arc::new(EgressPolicy::default()),
            secrets: None,
        };
        Ok(Self {
            sandbox,
            component,
            grant,
            caller: CallerIdentity {
                client: client.into(),
                ..CallerIdentity::default()
            },
            never_cancelled: CancellationToken::new(),
        })
    }

    /// One call of `transform` with JSON `arguments` in a fresh instance.
    pub async fn transform(&self, arguments: &str) -> CallReport {
        self.sandbox
            .call(
                &self.component,
                &self.grant,
                &self.caller,
                "transform",
                arguments,
                &self.never_cancelled,
            )
            .await
    }
}
