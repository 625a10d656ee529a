//! The floor: the least an MCP stdio server can do per call. It reads one
//! line with a blocking read, parses it with serde_json, answers
//! `initialize`, `tools/list` and `tools/call` (text-kit's `transform`)
//! and writes one line back. No protocol library, no checks: what any
//! stdio server pays at the least.
//!
//! By default `transform` is compiled in. With `--sandbox WASM CACHE_DIR`
//! it runs in a fresh instance of text-kit's component instead, through
//! `stockade-host-api` under the demo manifest's limits (a current-thread
//! tokio runtime drives the call on the reading thread): the floor of any
//! server that isolates every call the way Stockade does.

mod demo_sandbox;

use std::io::{BufRead, Write};
use std::path::Path;

use anyhow::{Result, bail};
use demo_sandbox::DemoSandbox;
use serde_json::{Value, json};
use stockade_host_api::ContentItem;
use text_kit::TransformArgs;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let tool = match args.as_slice() {
        [] => Tool::Native,
        [flag, wasm, cache] if flag == "--sandbox" => {
            Tool::Sandboxed(Box::new(Sandboxed::new(Path::new(wasm), Path::new(cache))?))
        }
        _ => bail!("usage: floor-server [--sandbox WASM CACHE_DIR]"),
    };
    let stdin = std::io::stdin().lock();
    let mut stdout = std::io::stdout().lock();
    let mut line = Vec::with_capacity(1024);
    let mut input = stdin;
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        let Ok(request) = serde_json::from_slice::<Value>(&line) else {
            continue;
        };
        // Notifications need no answer.
        let Some(id) = request.get("id") else {
            continue;
        };
        let params = request.get("params").unwrap_or(&Value::Null);
        let answer = match request.get("method").and_then(Value::as_str) {
            Some("initialize") => json!({
                "protocolVersion": params.get("protocolVersion").cloned().unwrap_or(json!("2025-06-18")),
                "capabilities": { "tools": {} },
                "serverInfo": { "name": "floor", "version": env!("CARGO_PKG_VERSION") },
            }),
            Some("tools/list") => json!({ "tools": [{
                "name": "transform",
                "description": "Transform text: upper, lower, reverse, trim or slug.",
                "inputSchema": { "type": "object" },
            }]}),
            Some("tools/call") => tool.call(params),
            _ => {
                let error = json!({ "jsonrpc": "2.0", "id": id, "error": { "code": -32601, "message": "method not found" } });
                write_line(&mut stdout, &error)?;
                continue;
            }
        };
        write_line(
            &mut stdout,
            &json!({ "jsonrpc": "2.0", "id": id, "result": answer }),
        )?;
    }
}

/// Where `transform` runs.
enum Tool {
    /// Compiled into this program.
    Native,
    /// In a fresh sandbox instance per call.
    Sandboxed(Box<Sandboxed>),
}

impl Tool {
    /// `transform` of the call's arguments, as a `tools/call` result.
    fn call(&self, params: &Value) -> Value {
        let arguments = params.get("arguments").cloned().unwrap_or(Value::Null);
        let output = match self {
            Tool::Native => serde_json::from_value::<TransformArgs>(arguments)
                .map(|args| text_kit::transform(&args.text, args.op))
                .map_err(|err| format!("invalid arguments: {err}")),
            Tool::Sandboxed(sandboxed) => sandboxed.call(&arguments.to_string()),
        };
        match output {
            Ok(text) => json!({ "content": [{ "type": "text", "text": text }], "isError": false }),
            Err(message) => {
                json!({ "content": [{ "type": "text", "text": message }], "isError": true })
            }
        }
    }
}

/// text-kit's component in a sandbox, and what drives a call on this
/// thread.
struct Sandboxed {
    demo: DemoSandbox,
    runtime: tokio::runtime::Runtime,
}

impl Sandboxed {
    fn new(wasm: &Path, cache_dir: &Path) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(Self {
            demo: DemoSandbox::new(cache_dir, wasm, None, "floor")?,
            runtime,
        })
    }

    /// One call in a fresh instance: the text of its result, or why not.
    fn call(&self, arguments: &str) -> Result<String, String> {
        let report = self.runtime.block_on(self.demo.transform(arguments));
        let output = report.result.map_err(|err| err.to_string())?;
        match output.content.first() {
            Some(ContentItem::Text(text) | ContentItem::Json(text)) => Ok(text.clone()),
            _ => Err("transform returned no text".into()),
        }
    }
}

fn write_line(out: &mut impl Write, value: &Value) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    out.write_all(b"\n")?;
    out.flush()
}
