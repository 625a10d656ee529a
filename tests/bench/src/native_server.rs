//! The native baseline: an MCP server built with rmcp that serves
//! text-kit's `transform` with the same logic compiled into the process,
//! with no sandbox, policy, validation, authentication or audit in between.
//! Over stdio by default; `--http ADDR` serves Streamable HTTP at `/mcp`.

use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler, ServiceExt};
use text_kit::TransformArgs;

/// Serves `transform` natively.
#[derive(Clone)]
struct NativeTextKit {
    transform: Tool,
}

impl NativeTextKit {
    fn new() -> anyhow::Result<Self> {
        let schema = serde_json::to_value(schemars::schema_for!(TransformArgs))?;
        let serde_json::Value::Object(schema) = schema else {
            anyhow::bail!("the schema of TransformArgs is not an object");
        };
        let transform = Tool::new(
            "transform",
            "Transform text: upper, lower, reverse, trim or slug.",
            Arc::new(schema),
        );
        Ok(Self { transform })
    }
}

impl ServerHandler for NativeTextKit {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build()).with_server_info(
            Implementation::new("native-text-kit", env!("CARGO_PKG_VERSION")),
        )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(vec![
            self.transform.clone(),
        ]))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        if request.name != "transform" {
            return Err(McpError::invalid_params(
                format!("unknown tool `{}`", request.name),
                None,
            ));
        }
        let arguments = serde_json::Value::Object(request.arguments.unwrap_or_default());
        let result = match serde_json::from_value::<TransformArgs>(arguments) {
            Ok(args) => CallToolResult::success(vec![ContentBlock::text(text_kit::transform(
                &args.text, args.op,
            ))]),
            Err(err) => CallToolResult::error(vec![ContentBlock::text(format!(
                "invalid arguments: {err}"
            ))]),
        };
        Ok(result.into())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let server = NativeTextKit::new()?;
    let mut args = std::env::args().skip(1);
    if let (Some(flag), Some(addr)) = (args.next(), args.next())
        && flag == "--http"
    {
        use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
        use rmcp::transport::streamable_http_server::{
            StreamableHttpServerConfig, StreamableHttpService,
        };
        let service = StreamableHttpService::new(
            move || Ok(server.clone()),
            Arc::new(LocalSessionManager::default()),
            StreamableHttpServerConfig::default(),
        );
        let app = axum::Router::new().route_service("/mcp", service);
        // As Stockade does: no Nagle delay on small responses.
        use axum::serve::ListenerExt as _;
        let listener = tokio::net::TcpListener::bind(&addr).await?.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, app).await?;
        return Ok(());
    }
    let running = server.serve(rmcp::transport::stdio()).await?;
    running.waiting().await?;
    Ok(())
}
