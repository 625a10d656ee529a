//! The checks HTTP requests pass, in order: Host and Origin (every route);
//! then, layered on the `/mcp` route alone, the in-flight bound,
//! authentication, the call depth, and session ownership. What passes
//! reaches rmcp with the caller's identity in its extensions.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, StatusCode, header};
use http_body_util::BodyExt as _;
use rmcp::transport::streamable_http_server::session::SessionManager as _;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use stockade_host_api::CALL_DEPTH_HEADER;
use tokio::sync::Semaphore;

use super::Readiness;
use super::sessions::SessionOwners;
use crate::auth::Authenticator;

/// The header naming a legacy session.
const SESSION_HEADER: &str = "mcp-session-id";

/// Shared state of the guard and the unauthenticated routes.
pub struct GuardState {
    pub(super) auth: Authenticator,
    pub(super) metadata: serde_json::Value,
    /// Path of the metadata document for this resource.
    pub(super) metadata_path: String,
    pub(super) owners: SessionOwners,
    pub(super) sessions: Arc<LocalSessionManager>,
    pub(super) in_flight: Arc<Semaphore>,
    pub(super) allowed_hosts: Vec<String>,
    pub(super) allowed_origins: Vec<String>,
    /// `http` or `https`, for the server's own origin.
    pub(super) scheme: &'static str,
    pub(super) body_timeout: Duration,
    pub(super) readiness: Readiness,
    pub(super) audit: Arc<crate::audit::Audit>,
    pub(super) failures: super::failures::FailureRecords,
}

/// A plain JSON error answer.
fn refuse(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Runs before every route: Host and Origin.
pub async fn check_origin(
    State(state): State<Arc<GuardState>>,
    request: Request,
    next: Next,
) -> Response {
    if let Err(rule) = check_host_and_origin(&state, &request) {
        return refuse(StatusCode::FORBIDDEN, rule);
    }
    next.run(request).await
}

/// Whether the request's Host and Origin are allowed; the refusal names
/// the setting that decides.
fn check_host_and_origin(state: &GuardState, request: &Request) -> Result<(), &'static str> {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.parse::<http::uri::Authority>().ok());
    let host_ok = host.as_ref().is_some_and(|authority| {
        let name = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        state.allowed_hosts.iter().any(|allowed| {
            let allowed = allowed.to_ascii_lowercase();
            allowed == name || allowed == authority.as_str().to_ascii_lowercase()
        })
    });
    if !host_ok {
        return Err("Host not allowed (http.allowed_hosts)");
    }
    let mut origins = request.headers().get_all(header::ORIGIN).iter();
    if let Some(origin) = origins.next() {
        // Listed origins, and this server's own (a page it served, were it
        // to serve one: the Host has already passed its allowlist).
        let own = host.map(|authority| format!("{}://{authority}", state.scheme));
        let allowed = origins.next().is_none()
            && origin.to_str().is_ok_and(|origin| {
                own.as_deref()
                    .is_some_and(|own| own.eq_ignore_ascii_case(origin))
                    || state
                        .allowed_origins
                        .iter()
                        .any(|allowed| allowed.eq_ignore_ascii_case(origin))
            });
        if !allowed {
            return Err("Origin not allowed (http.allowed_origins)");
        }
    }
    Ok(())
}

/// Runs before the MCP endpoint, and only there (it is layered on that
/// route, so no path spelling can reach rmcp without it): the in-flight
/// bound, authentication, the call depth and session ownership.
pub async fn authenticate(
    State(state): State<Arc<GuardState>>,
    mut request: Request,
    next: Next,
) -> Response {
    // A GET is the long-lived stream of a legacy session: bounded by the
    // session count, not held against requests in flight.
    let permit = if request.method() == Method::GET {
        None
    } else {
        match state.in_flight.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => {
                let mut response = refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "busy: too many requests in flight (http.max_in_flight); retry shortly",
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                return response;
            }
        }
    };
    let principal = match state
        .auth
        .authenticate(request.headers(), request.uri())
        .await
    {
        Ok(principal) => principal,
        Err(failure) => {
            let peer = request
                .extensions()
                .get::<super::Connection>()
                .map(|c| c.peer.to_string());
            tracing::info!(target: "stockade::auth", peer, "request refused: {failure}");
            let address = request
                .extensions()
                .get::<super::Connection>()
                .map(|c| c.peer);
            state.failures.record(&state.audit, address, &failure);
            return state.auth.refusal(&failure).map(Body::from);
        }
    };
    let call_depth = match request.headers().get(CALL_DEPTH_HEADER) {
        None => 0,
        Some(value) => match value.to_str().ok().and_then(|v| v.parse::<u32>().ok()) {
            Some(depth) => depth,
            None => {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    "the stockade-call-depth header must be a number",
                );
            }
        },
    };
    let mut caller = principal.caller(call_depth);
    if let Some(subject) = request
        .extensions()
        .get::<super::Connection>()
        .and_then(|c| c.client_subject.clone())
    {
        // A verified client certificate names the client; the token
        // still names the user.
        caller.client = subject;
    }
    tracing::debug!(
        target: "stockade::auth",
        client = %caller.client,
        user = caller.user.as_deref(),
        method = ?principal.method,
        "authenticated"
    );
    // Who owns what this caller opens: the key its limits are kept under.
    let subject = crate::policy::caller_key(&caller);
    let session = request
        .headers()
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(id) = &session
        && let Err(why) = state.owners.check(id, &subject)
    {
        if why == super::sessions::NotYours::Other {
            tracing::warn!(
                target: "stockade::auth",
                client = %caller.client,
                user = caller.user.as_deref(),
                "a session opened by another caller was presented; refused as unknown"
            );
        }
        // The same answer as for a session that never existed.
        return refuse(StatusCode::NOT_FOUND, "session not found");
    }
    request.extensions_mut().insert(caller);
    let is_delete = request.method() == Method::DELETE;
    let timeout = state.body_timeout;
    // A client that stalls while sending its body is cut off.
    let request =
        request.map(|body| Body::new(tower_http::timeout::TimeoutBody::new(timeout, body)));
    let response = next.run(request).await;
    if session.is_none()
        && let Some(opened) = response
            .headers()
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
        && let Some(evicted) = state.owners.claim(opened, &subject)
    {
        tracing::warn!(target: "stockade::http", "http.max_sessions reached; the least recently used session is closed");
        let _ = state.sessions.close_session(&Arc::from(evicted)).await;
    }
    if is_delete
        && response.status().is_success()
        && let Some(id) = &session
    {
        state.owners.release(id);
    }
    match permit {
        None => response,
        // The permit is held until the body (an SSE stream) is finished.
        Some(permit) => response.map(|body| {
            Body::new(body.map_frame(move |frame| {
                let _held = &permit;
                frame
            }))
        }),
    }
}

/// `GET /.well-known/oauth-protected-resource[/…]` (RFC 9728).
pub async fn metadata(State(state): State<Arc<GuardState>>, request: Request) -> Response {
    let path = request.uri().path();
    if path != "/.well-known/oauth-protected-resource" && path != state.metadata_path {
        return not_found().await;
    }
    let mut response = axum::Json(state.metadata.clone()).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

/// `GET /healthz`: the process is serving.
pub async fn healthz() -> Response {
    (StatusCode::OK, "ok\n").into_response()
}

/// `GET /readyz`: tools are loaded and the secret store answers.
pub async fn readyz(State(state): State<Arc<GuardState>>) -> Response {
    if state.readiness.tools == 0 {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no tools loaded\n",
        )
            .into_response();
    }
    if let Some(backend) = &state.readiness.secrets
        && let Err(reason) = backend.check().await
    {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        )
            .into_response();
    }
    if let Err(reason) = state.audit.health() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        )
            .into_response();
    }
    (StatusCode::OK, "ready\n").into_response()
}

/// Every other path.
pub async fn not_found() -> Response {
    refuse(StatusCode::NOT_FOUND, "not found")
}
