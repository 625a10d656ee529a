//! The MCP edge: translates protocol requests into the call path and back.
//! No policy or sandbox logic lives here.

use std::sync::Arc;

use rmcp::model::SubscriptionFilter;
use rmcp::model::{
    CacheScope, CallToolRequestParams, CallToolResponse, Implementation, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool, ToolAnnotations,
};
use rmcp::service::{NotificationContext, RequestContext, SubscriptionContext};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use stockade_host_api::CallerIdentity;
use tracing::Instrument as _;

use crate::approval::Asking;
use crate::audit::RequestInfo;
use crate::call::{CallPath, CallRequest};
use crate::registry::RegisteredTool;

/// How often an idle legacy session's notifier checks that its client is
/// still there.
const SESSION_CHECK: std::time::Duration = std::time::Duration::from_secs(30);

/// How long clients may cache a tool list.
const LIST_TTL_MS: u64 = 60_000;

/// One MCP server: a call path plus the identity of the peer it serves.
#[derive(Clone)]
pub struct McpServer {
    path: Arc<CallPath>,
    /// The peer, when the transport knows it once for all (stdio); `None`
    /// when every request carries its own (HTTP, in the request's
    /// extensions, put there by the authentication guard).
    caller: Option<CallerIdentity>,
    name: String,
    /// Names this connection in the audit.
    session: Arc<str>,
    /// Where a stdio session keeps its peer once the handshake is done,
    /// for the edge's hot path.
    session_peer: Option<crate::stdio::SessionPeer>,
}

impl McpServer {
    /// A server for a peer whose identity the transport has established.
    pub fn new(path: Arc<CallPath>, caller: CallerIdentity, name: &str) -> Self {
        Self::serving(path, Some(caller), name)
    }

    /// A server whose callers are authenticated per HTTP request.
    pub fn for_http(path: Arc<CallPath>, name: &str) -> Self {
        Self::serving(path, None, name)
    }

    fn serving(path: Arc<CallPath>, caller: Option<CallerIdentity>, name: &str) -> Self {
        Self {
            path,
            caller,
            name: name.to_owned(),
            session: uuid::Uuid::new_v4().to_string().into(),
            session_peer: None,
        }
    }

    /// Hands a stdio session's peer to the edge (once), so that its calls
    /// take the hot path from then on.
    fn keep_session_peer(&self, peer: &rmcp::service::Peer<RoleServer>) {
        if let Some(slot) = &self.session_peer {
            slot.get_or_init(|| peer.clone());
        }
    }

    /// Keeps the session's peer in `slot` once its handshake is done.
    pub fn with_session_peer(mut self, slot: crate::stdio::SessionPeer) -> Self {
        self.session_peer = Some(slot);
        self
    }

    /// The caller of the request behind `context`. A request with no
    /// identity never gets past the HTTP guard; should one arrive, it is
    /// refused here too.
    fn caller<'a>(
        &'a self,
        context: &'a RequestContext<RoleServer>,
    ) -> Result<&'a CallerIdentity, McpError> {
        self.caller
            .as_ref()
            .or_else(|| {
                context
                    .extensions
                    .get::<http::request::Parts>()
                    .and_then(|parts| parts.extensions.get::<CallerIdentity>())
            })
            .ok_or_else(|| McpError::invalid_request("not authenticated", None))
    }
}

impl McpServer {
    /// What the audit records of the request behind `context`: this
    /// connection, the JSON-RPC id, and the protocol version (the
    /// request's own in the 2026 era, the session's in the legacy one).
    fn request_info(&self, context: &RequestContext<RoleServer>) -> RequestInfo {
        RequestInfo {
            session: self.session.clone(),
            id: context.id.to_string(),
            protocol: context
                .meta
                .protocol_version()
                .or_else(|| context.peer.peer_info().map(|p| p.protocol_version.clone()))
                .map(|v| v.to_string()),
        }
    }
}

/// The MCP form of a registered tool.
pub fn to_mcp_tool(tool: &RegisteredTool) -> Tool {
    let d = &tool.descriptor;
    let schema = d.input_schema.as_object().cloned().unwrap_or_default();
    let hints = ToolAnnotations::new()
        .read_only(d.hints.read_only)
        .destructive(d.hints.destructive)
        .idempotent(d.hints.idempotent)
        .open_world(d.hints.open_world);
    let mut mcp =
        Tool::new(d.name.clone(), d.description.clone(), Arc::new(schema)).with_annotations(hints);
    if let Some(title) = &d.title {
        mcp = mcp.with_title(title.clone());
    }
    if let Some(output) = d.output_schema.as_ref().and_then(|s| s.as_object()) {
        mcp = mcp.with_raw_output_schema(Arc::new(output.clone()));
    }
    mcp
}

impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .build(),
        )
        .with_server_info(Implementation::new(&self.name, env!("CARGO_PKG_VERSION")))
        .with_instructions(
            "Stockade serves sandboxed WebAssembly tools. Each call runs in a fresh sandbox.",
        )
    }

    /// A legacy session: its peer is handed to the stdio edge (calls take
    /// the hot path from now on), and it is told of every tool-list change
    /// (a kill switch, a reload) until its transport closes.
    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        let peer = context.peer;
        self.keep_session_peer(&peer);
        let mut changes = self.path.list_changes();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    changed = changes.changed() => {
                        if changed.is_err() || peer.notify_tool_list_changed().await.is_err() {
                            break;
                        }
                    }
                    () = tokio::time::sleep(SESSION_CHECK) => {
                        if peer.is_transport_closed() {
                            break;
                        }
                    }
                }
            }
        });
    }

    /// 2026-07-28: `subscriptions/listen` may ask for tool-list changes.
    fn accepted_subscription_filter(
        &self,
        _requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        Some(SubscriptionFilter::builder().tools_list_changed().build())
    }

    /// 2026-07-28: one listen stream, told of every tool-list change until
    /// the client cancels it.
    async fn listen(&self, subscription: SubscriptionContext) -> Result<(), McpError> {
        let mut changes = self.path.list_changes();
        loop {
            tokio::select! {
                () = subscription.cancelled() => return Ok(()),
                changed = changes.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    if subscription.sink().notify_tool_list_changed().await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let caller = self.caller(&context)?;
        // Every log line of the listing names its caller.
        let _named =
            tracing::info_span!("list", client = %caller.client, user = caller.user.as_deref())
                .entered();
        let tools = self
            .path
            .visible_tools(caller, &self.request_info(&context))?
            .iter()
            .map(|t| to_mcp_tool(t))
            .collect();
        let mut result = ListToolsResult::with_all_items(tools);
        result.ttl_ms = Some(LIST_TTL_MS);
        result.cache_scope = Some(CacheScope::Private);
        Ok(result)
    }

    async fn call_tool(
        &self,
        mut request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        // Moved, not copied: they can be up to a mebibyte.
        let arguments = request.arguments.take();
        // A 2026-era stdio session has no handshake: its first call hands
        // the session's peer to the edge instead.
        self.keep_session_peer(&context.peer);
        let info = self.request_info(&context);
        let caller = self.caller(&context)?;
        // Every log line of the call names its caller.
        let span =
            tracing::info_span!("call", client = %caller.client, user = caller.user.as_deref());
        // A person can be asked only through what the client declared:
        // 2026 requests carry their own capabilities and answer in a retry;
        // legacy sessions are asked by a server-to-client request.
        let declared = context
            .client_capabilities()
            .is_some_and(|c| c.elicitation.is_some());
        let asking = match (declared, context.meta.protocol_version().is_some()) {
            (false, _) => Asking::Cannot,
            (true, true) => Asking::Retry {
                state: request.request_state.as_deref(),
                responses: request.input_responses.as_ref(),
            },
            (true, false) => Asking::Peer(&context.peer),
        };
        let idempotency_key = request
            .meta
            .as_ref()
            .and_then(|meta| meta.0.0.get(crate::idempotency::META_KEY))
            .or_else(|| context.meta.0.0.get(crate::idempotency::META_KEY))
            .map(|key| match key {
                serde_json::Value::String(text) => text.clone(),
                other => other.to_string(),
            });
        let call = CallRequest {
            name: &request.name,
            arguments,
            asking,
            idempotency_key,
        };
        // rmcp cancels `context.ct` on the client's notifications/cancelled.
        self.path
            .call(caller, call, &context.ct, &info)
            .instrument(span)
            .await
    }
}
