//! MCP over Streamable HTTP: the listener, TLS, and the guard every request
//! passes before rmcp sees it (Host and Origin, authentication, session
//! ownership, in-flight bound). Both protocol eras are served at `/mcp`:
//! 2026-07-28 statelessly, 2025-11-25 with sessions.
//!
//! Unauthenticated, a client can reach the health checks and the
//! protected-resource metadata, none of which names a tool.

pub mod failures;
mod guard;
pub mod sessions;
pub mod settings;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::auth::Authenticator;
use crate::call::CallPath;
use crate::mcp::McpServer;
use crate::secrets::Backend;
pub use settings::{HttpSettings, RawHttp};

/// Path of the MCP endpoint.
pub const MCP_PATH: &str = "/mcp";

/// What `/readyz` checks: tools are loaded, and the secret store answers
/// when one is configured.
pub struct Readiness {
    /// Tools being served.
    pub tools: usize,
    /// The secret backend, when configured.
    pub secrets: Option<Arc<Backend>>,
}

/// What the HTTP edge serves and how it knows callers.
pub struct Endpoint {
    /// Checks every request's credentials.
    pub auth: Authenticator,
    /// Runs the calls.
    pub path: Arc<CallPath>,
    /// Name reported to clients.
    pub server_name: String,
    /// What `/readyz` checks.
    pub readiness: Readiness,
    /// Where refused credentials are recorded.
    pub audit: Arc<crate::audit::Audit>,
}

/// The facts about one connection a request carries.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The peer's address.
    pub peer: SocketAddr,
    /// The subject of a verified client certificate.
    pub client_subject: Option<String>,
}

/// The URL clients use for `/mcp` on `addr`, and the loopback check.
pub fn resource_uri(settings: &HttpSettings, addr: SocketAddr) -> String {
    settings.resource.clone().unwrap_or_else(|| {
        let scheme = if settings.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{addr}{MCP_PATH}")
    })
}

/// The protected-resource metadata URL for `resource` (RFC 9728: the
/// well-known path inserted before the resource's path).
pub fn metadata_uri(resource: &str) -> String {
    let after_scheme = resource.find("://").map_or(0, |at| at + 3);
    let (origin, path) = match resource[after_scheme..].find('/') {
        Some(at) => resource.split_at(after_scheme + at),
        None => (resource, ""),
    };
    format!("{origin}/.well-known/oauth-protected-resource{path}")
}

/// Serves MCP over HTTP on `addr` until `shutdown` is cancelled; then
/// takes no new connections, lets requests in flight finish within
/// `grace`, and closes the rest.
pub async fn serve(
    settings: HttpSettings,
    addr: SocketAddr,
    endpoint: Endpoint,
    shutdown: CancellationToken,
    grace: Duration,
) -> anyhow::Result<()> {
    let Endpoint {
        auth,
        path,
        server_name,
        readiness,
        audit,
    } = endpoint;
    if !addr.ip().is_loopback() && settings.tls.is_none() && !settings.allow_insecure {
        anyhow::bail!(
            "refusing to serve plain HTTP on {addr}: it is not a loopback address, so credentials and tool results would cross the network in clear. Configure [http.tls], or set http.allow_insecure = true if a TLS proxy on this host terminates it"
        );
    }
    if !auth.is_configured() {
        anyhow::bail!(
            "refusing to serve HTTP without authentication: configure [[auth.api_keys]] or [auth.oauth] (or, for development on loopback, pass --dev-api-key)"
        );
    }
    let tls = settings
        .tls
        .as_ref()
        .map(tls::server_config)
        .transpose()
        .context("cannot set up TLS")?
        .map(tokio_rustls::TlsAcceptor::from);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    let resource = resource_uri(&settings, local);
    let allowed_hosts = settings.allowed_hosts.clone().unwrap_or_else(|| {
        let mut hosts: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
        if let Some(host) = resource
            .parse::<http::Uri>()
            .ok()
            .and_then(|u| u.host().map(str::to_owned))
        {
            hosts.push(
                host.trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned(),
            );
        }
        if !local.ip().is_unspecified() {
            hosts.push(local.ip().to_string());
        }
        hosts
    });
    auth.prefetch().await;
    let sessions = Arc::new(LocalSessionManager::default());
    let rmcp_stop = CancellationToken::new();
    let config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(allowed_hosts.clone())
        // The guard checks Origin (allowlist plus same-origin) first.
        .disable_allowed_origins()
        .with_max_request_body_bytes(settings.max_body)
        .with_cancellation_token(rmcp_stop.clone());
    let mcp = StreamableHttpService::new(
        move || Ok(McpServer::for_http(path.clone(), &server_name)),
        sessions.clone(),
        config,
    );
    let in_flight = Arc::new(Semaphore::new(settings.max_in_flight));
    let state = Arc::new(guard::GuardState {
        metadata: auth.metadata(),
        metadata_path: metadata_uri(&resource)
            .parse::<http::Uri>()
            .map(|u| u.path().to_owned())
            .unwrap_or_default(),
        auth,
        owners: sessions::SessionOwners::new(settings.max_sessions),
        sessions,
        in_flight: in_flight.clone(),
        allowed_hosts,
        allowed_origins: settings.allowed_origins.clone(),
        scheme: if settings.tls.is_some() {
            "https"
        } else {
            "http"
        },
        body_timeout: settings.body_timeout,
        readiness,
        audit,
        failures: failures::FailureRecords::default(),
    });
    let endpoint = Router::new().route_service(MCP_PATH, mcp).route_layer(
        axum::middleware::from_fn_with_state(state.clone(), guard::authenticate),
    );
    let app = Router::new()
        .merge(endpoint)
        .route(
            "/.well-known/oauth-protected-resource",
            get(guard::metadata),
        )
        .route(
            "/.well-known/oauth-protected-resource/{*rest}",
            get(guard::metadata),
        )
        .route("/healthz", get(guard::healthz))
        .route("/readyz", get(guard::readyz))
        .fallback(guard::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::check_origin,
        ))
        .with_state(state);
    tracing::info!(
        target: "stockade::http",
        %local,
        %resource,
        tls = tls.is_some(),
        "serving MCP over HTTP"
    );
    let connections = Arc::new(Semaphore::new(settings.max_connections));
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of descriptors and the like: wait, do not spin.
                    tracing::warn!(target: "stockade::http", "accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tracing::warn!(target: "stockade::http", %peer, "http.max_connections reached; connection closed");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let serving = Serving {
            app: app.clone(),
            header_timeout: settings.header_timeout,
            watcher: graceful.watcher(),
        };
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut connection = Connection {
                peer,
                client_subject: None,
            };
            let Some(acceptor) = tls else {
                return serving.run(stream, connection).await;
            };
            let handshake = tokio::time::timeout(serving.header_timeout, acceptor.accept(stream));
            let stream = match handshake.await {
                Ok(Ok(stream)) => stream,
                Ok(Err(err)) => {
                    tracing::info!(target: "stockade::http", %peer, "TLS handshake failed: {err}");
                    return;
                }
                Err(_) => {
                    tracing::info!(target: "stockade::http", %peer, "TLS handshake timed out");
                    return;
                }
            };
            connection.client_subject = tls::client_subject(stream.get_ref().1.peer_certificates());
            serving.run(stream, connection).await
        });
    }
    drop(listener);
    tracing::info!(target: "stockade::http", "no new connections; requests in flight may finish within shutdown_grace");
    let all = u32::try_from(settings.max_in_flight).unwrap_or(u32::MAX);
    if tokio::time::timeout(grace, in_flight.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!(target: "stockade::http", "shutdown_grace passed with requests in flight; they are cancelled");
    }
    rmcp_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(2), graceful.shutdown()).await;
    Ok(())
}

/// What one accepted connection is served with.
struct Serving {
    app: Router,
    /// Time a client has for each request head (and the TLS handshake).
    header_timeout: Duration,
    /// Lets a shutdown wait for the connection.
    watcher: hyper_util::server::graceful::Watcher,
}

impl Serving {
    /// Serves the connection's HTTP/1.1 requests through the app.
    async fn run<I>(self, io: I, connection: Connection)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        use tower::ServiceExt as _;
        let peer = connection.peer;
        let app = self.app;
        let service =
            hyper::service::service_fn(move |mut request: http::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(connection.clone());
                app.clone().oneshot(request)
            });
        let served = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_timeout)
            .max_buf_size(64 << 10)
            .max_headers(100)
            .serve_connection(TokioIo::new(io), service);
        if let Err(err) = self.watcher.watch(served).await {
            tracing::debug!(target: "stockade::http", %peer, "connection ended: {err}");
        }
    }
}
