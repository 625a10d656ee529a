//! The floor: the least an MCP stdio server can do per call. It reads one
//! line with a blocking read, parses it with serde_json, answers
//! `initialize`, `tools/list` and `tools/call` (text-kit's `transform`,
//! compiled in) and writes one line back. No async runtime, no protocol
//! library, no checks: what any stdio server pays at the least.

use std::io::{BufRead, Write};

use serde_json::{Value, json};
use text_kit::TransformArgs;

fn main() -> std::io::Result<()> {
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
            Some("tools/call") => call(params),
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

/// `transform`, or an error result for unusable arguments.
fn call(params: &Value) -> Value {
    let arguments = params.get("arguments").cloned().unwrap_or(Value::Null);
    match serde_json::from_value::<TransformArgs>(arguments) {
        Ok(args) => json!({
            "content": [{ "type": "text", "text": text_kit::transform(&args.text, args.op) }],
            "isError": false,
        }),
        Err(err) => json!({
            "content": [{ "type": "text", "text": format!("invalid arguments: {err}") }],
            "isError": true,
        }),
    }
}

fn write_line(out: &mut impl Write, value: &Value) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    out.write_all(b"\n")?;
    out.flush()
}
