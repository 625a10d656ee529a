//! Fetch a web page or API response from a destination on the allowlist.

use schemars::JsonSchema;
use serde::Deserialize;
use stockade_sdk::http::Request;
use stockade_sdk::{Output, Tool, ToolError, Toolbox};

/// Arguments of `fetch`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct FetchArgs {
    /// The http:// or https:// URL to GET.
    url: String,
    /// Read at most this many bytes of body (default 262144).
    #[serde(default)]
    max_bytes: Option<u32>,
}

fn fetch(args: FetchArgs) -> Result<Output, ToolError> {
    let max = args.max_bytes.unwrap_or(256 * 1024) as usize;
    let response = Request::get(&args.url).max_body(max).send()?;
    let text = response.text();
    if response.status >= 400 {
        return Err(ToolError::Failed(format!(
            "{} answered {}: {}",
            args.url,
            response.status,
            text.chars().take(500).collect::<String>()
        )));
    }
    Ok(Output::text(text))
}

/// The fetch tool.
pub struct Fetch;

impl Toolbox for Fetch {
    fn tools() -> Vec<Tool> {
        vec![
            Tool::new(
                "fetch",
                "GET a URL on this tool's allowlist and return the body as text.",
                fetch,
            )
            .title("Fetch URL")
            .read_only()
            .open_world(),
        ]
    }
}

stockade_sdk::export_toolbox!(Fetch);
