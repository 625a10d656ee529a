//! The admin listener (`[admin] listen`): Prometheus metrics at
//! `/metrics`, liveness at `/healthz`, and at `/readyz` a JSON view of
//! what serving depends on: tools, the audit sink, its shippers' spools
//! and the secret backend. With `[[admin.keys]]`, operators also change
//! the kill switches at `/control` (`GET` the switches, `POST` an
//! operation), each request carrying an admin key as a bearer token.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use stockade_host_api::Sandbox;
use tokio_util::sync::CancellationToken;

use crate::audit::Audit;
use crate::config::ConfigError;
use crate::metrics::{Metrics, Snapshot};
use crate::secrets::Backend;

/// `[admin]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    listen: Option<String>,
    #[serde(default)]
    allow_remote: bool,
    #[serde(default)]
    keys: Vec<RawAdminKey>,
}

/// One `[[admin.keys]]`: an operator's key, by its SHA-256 (`stockade
/// apikey new` makes one).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdminKey {
    name: String,
    sha256: String,
}

/// `[admin]`, checked.
#[derive(Debug, Clone, Default)]
pub struct AdminSettings {
    /// Where to serve; `None` means no admin listener.
    pub listen: Option<SocketAddr>,
    /// Operators' keys for `/control`: name and SHA-256 of the key.
    pub keys: Vec<(String, [u8; 32])>,
}

impl RawAdmin {
    /// Checks the address: loopback unless `allow_remote` says otherwise
    /// (metrics name clients and tools, and carry no authentication).
    pub fn check(
        &self,
        invalid: &dyn Fn(&str, &str) -> ConfigError,
    ) -> Result<AdminSettings, ConfigError> {
        let listen = match &self.listen {
            None => None,
            Some(text) => {
                let addr: SocketAddr = text.parse().map_err(|_| {
                    invalid("admin.listen", "an address such as \"127.0.0.1:9464\"")
                })?;
                if !addr.ip().is_loopback() && !self.allow_remote {
                    return Err(invalid(
                        "admin.listen",
                        "a loopback address (metrics name clients and tools and have no authentication; set admin.allow_remote = true to expose them)",
                    ));
                }
                Some(addr)
            }
        };
        let mut keys = Vec::new();
        for (index, key) in self.keys.iter().enumerate() {
            let digest = crate::auth::apikey::parse_digest(&key.sha256).ok_or_else(|| {
                invalid(
                    &format!("admin.keys[{index}].sha256"),
                    "64 hex digits (the SHA-256 `stockade apikey new` prints)",
                )
            })?;
            keys.push((key.name.clone(), digest));
        }
        Ok(AdminSettings { listen, keys })
    }
}

/// What the admin routes read.
pub struct AdminState {
    /// The counters.
    pub metrics: Arc<Metrics>,
    /// The audit sink and its shippers.
    pub audit: Arc<Audit>,
    /// The sandbox, for its slots.
    pub sandbox: Arc<Sandbox>,
    /// The secret backend, when configured.
    pub secrets: Option<Arc<Backend>>,
    /// Tools being served.
    pub tools: usize,
    /// The kill switches.
    pub control: Arc<crate::control::Control>,
    /// Operators' keys for `/control`.
    pub keys: Vec<(String, [u8; 32])>,
    /// Audit records of refused admin keys, bounded per peer.
    pub failures: crate::http::failures::FailureRecords,
}

impl AdminState {
    async fn snapshot(&self) -> Snapshot {
        let written = self.audit.next_seq();
        let secrets_ok = match &self.secrets {
            Some(backend) => Some(backend.check().await.is_ok()),
            None => None,
        };
        Snapshot {
            slots: self.sandbox.slots(),
            audit_ok: self.audit.health().is_ok(),
            secrets_ok,
            shipping: self
                .audit
                .shipping()
                .iter()
                .map(|s| {
                    (
                        s.name,
                        written.saturating_sub(s.next_seq()),
                        s.error().is_none(),
                    )
                })
                .collect(),
        }
    }
}

/// Serves the admin routes on `addr` until `stop`.
pub async fn serve(
    addr: SocketAddr,
    state: Arc<AdminState>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on admin.listen {addr}: {e}"))?;
    tracing::info!(target: "stockade::admin", "admin listener on http://{addr} (/metrics, /healthz, /readyz)");
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/control", get(control_state).post(control_change))
        .with_state(state);
    tokio::spawn(async move {
        let served = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await;
        if let Err(err) = served {
            tracing::error!(target: "stockade::admin", "admin listener failed: {err}");
        }
    });
    Ok(())
}

async fn metrics(State(state): State<Arc<AdminState>>) -> Response {
    let text = state.metrics.render(&state.snapshot().await);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// A JSON error body with `status`.
fn json_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({ "error": message }).to_string(),
    )
        .into_response()
}

/// The operator a request's bearer key names, or the status and reason
/// to refuse it with.
fn operator(
    state: &AdminState,
    peer: SocketAddr,
    headers: &axum::http::HeaderMap,
) -> Result<String, (StatusCode, &'static str)> {
    use crate::auth::AuthFailure;
    if state.keys.is_empty() {
        return Err((
            StatusCode::FORBIDDEN,
            "control over HTTP is off: no [[admin.keys]] configured",
        ));
    }
    let refuse = |failure: AuthFailure, message: &'static str| {
        state.failures.record(&state.audit, Some(peer), &failure);
        (StatusCode::UNAUTHORIZED, message)
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            refuse(
                AuthFailure::Missing,
                "an admin key is required (Authorization: Bearer KEY)",
            )
        })?;
    let digest = crate::auth::apikey::digest(presented.trim());
    state
        .keys
        .iter()
        .find(|(_, known)| *known == digest)
        .map(|(name, _)| name.clone())
        .ok_or_else(|| {
            refuse(
                AuthFailure::Invalid("unknown admin key on the admin listener".into()),
                "unknown admin key",
            )
        })
}

async fn control_state(
    State(state): State<Arc<AdminState>>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<SocketAddr>,
    headers: axum::http::HeaderMap,
) -> Response {
    if let Err((status, message)) = operator(&state, peer, &headers) {
        return json_error(status, message);
    }
    let body = serde_json::json!({ "switches": &*state.control.switches() });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// A change as `POST /control` takes it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeRequest {
    operation: crate::control::Operation,
    #[serde(default)]
    reason: Option<String>,
}

async fn control_change(
    State(state): State<Arc<AdminState>>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<SocketAddr>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let name = match operator(&state, peer, &headers) {
        Ok(name) => name,
        Err((status, message)) => return json_error(status, message),
    };
    let request: ChangeRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(err) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                &format!("not a control request: {err}"),
            );
        }
    };
    let notice = crate::control::Notice {
        operation: request.operation,
        by: format!("admin key `{name}` from {peer}"),
        who: name.clone(),
        reason: request.reason,
    };
    match crate::control::change(state.control.dir(), &notice).await {
        Ok((switches, answers)) => {
            let body = serde_json::json!({ "switches": switches, "answers": answers });
            (
                [(header::CONTENT_TYPE, "application/json")],
                body.to_string(),
            )
                .into_response()
        }
        Err(err) => json_error(StatusCode::INTERNAL_SERVER_ERROR, &err.to_string()),
    }
}

async fn readyz(State(state): State<Arc<AdminState>>) -> Response {
    let audit = state.audit.health();
    let shipping: Vec<_> = state
        .audit
        .shipping()
        .iter()
        .map(|s| {
            serde_json::json!({
                "shipper": s.name,
                "backlog": state.audit.next_seq().saturating_sub(s.next_seq()),
                "delivered": s.delivered(),
                "error": s.error(),
            })
        })
        .collect();
    let secrets = match &state.secrets {
        None => None,
        Some(backend) => Some(backend.check().await),
    };
    let ready = state.tools > 0 && audit.is_ok() && !matches!(secrets, Some(Err(_)));
    let body = serde_json::json!({
        "ready": ready,
        "tools": state.tools,
        "audit": match &audit { Ok(sink) => serde_json::json!({"ok": true, "sink": sink}), Err(e) => serde_json::json!({"ok": false, "error": e}) },
        "shipping": shipping,
        "secrets": secrets.map(|r| match r { Ok(()) => serde_json::json!({"ok": true}), Err(e) => serde_json::json!({"ok": false, "error": e.to_string()}) }),
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}
