//! One line of input, judged: a message for rmcp, an error to answer
//! ourselves, or stray input to log and drop.
//!
//! rmcp parses each line itself and silently drops what it cannot use;
//! this judges the line first, so every request that carries an id gets an
//! answer with that id and the JSON-RPC code that fits: `-32700` for what
//! is not JSON (or not UTF-8, or nested too deep), `-32600` for what is not
//! a usable request, `-32602` for a known method with unusable params.

use std::borrow::Cow;

use rmcp::model::{
    CallToolRequest, CallToolRequestParams, ClientJsonRpcMessage, ClientRequest, JsonRpcMessage,
    JsonRpcRequest, JsonRpcVersion2_0, RequestId,
};
use serde::Deserialize;
use serde_json::{Value, json};

/// JSON-RPC: the line is not JSON.
pub const PARSE_ERROR: i64 = -32700;
/// JSON-RPC: the JSON is not a usable request.
pub const INVALID_REQUEST: i64 = -32600;
/// JSON-RPC: the method exists but its params are unusable.
pub const INVALID_PARAMS: i64 = -32602;

/// Client request methods rmcp knows. A request for one of these that rmcp
/// can only read as a custom request has params it cannot use.
const KNOWN_METHODS: &[&str] = &[
    "initialize",
    "server/discover",
    "ping",
    "completion/complete",
    "logging/setLevel",
    "prompts/get",
    "prompts/list",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "resources/directory/read",
    "subscriptions/listen",
    "tools/call",
    "tools/list",
    "tasks/get",
    "tasks/update",
    "tasks/cancel",
    "skills/list",
    "skills/get",
];

/// What to do with one line.
#[derive(Debug)]
pub enum Verdict {
    /// A message rmcp can handle.
    Forward(Box<ClientJsonRpcMessage>),
    /// An error response to write back (already a whole JSON-RPC message).
    Answer(Value),
    /// Input that is not a request (a malformed response or
    /// notification): logged and dropped, never answered.
    Ignore(String),
}

/// A JSON-RPC error response.
pub fn error_response(id: Value, code: i64, message: impl Into<String>) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": { "code": code, "message": message.into() },
    })
}

/// Judges one line (without its newline); `max_depth` bounds nesting.
pub fn judge(line: &[u8], max_depth: usize) -> Verdict {
    let answer =
        |code, message: String| Verdict::Answer(error_response(recover_id(line), code, message));
    let text = match std::str::from_utf8(line) {
        Ok(text) => text,
        Err(err) => {
            let at = err.valid_up_to();
            return answer(
                PARSE_ERROR,
                format!("parse error: the message is not valid UTF-8 (at byte {at})"),
            );
        }
    };
    if nesting_depth(line) > max_depth {
        return answer(
            PARSE_ERROR,
            format!("parse error: the message nests deeper than {max_depth} levels"),
        );
    }
    if let Some(call) = parse_call(text) {
        return Verdict::Forward(Box::new(call));
    }
    match serde_json::from_str::<ClientJsonRpcMessage>(text) {
        Ok(JsonRpcMessage::Request(request)) => match &request.request {
            ClientRequest::CustomRequest(custom)
                if KNOWN_METHODS.contains(&custom.method.as_str()) =>
            {
                let id = serde_json::to_value(&request.id).unwrap_or(Value::Null);
                let why = params_problem(&custom.method, custom.params.as_ref());
                Verdict::Answer(error_response(id, INVALID_PARAMS, why))
            }
            _ => Verdict::Forward(Box::new(JsonRpcMessage::Request(request))),
        },
        Ok(JsonRpcMessage::Notification(n)) => {
            Verdict::Forward(Box::new(JsonRpcMessage::Notification(n)))
        }
        // Answers to the server's own requests (elicitation); rmcp matches
        // them to what it asked and drops any it never asked for.
        Ok(message @ (JsonRpcMessage::Response(_) | JsonRpcMessage::Error(_))) => {
            Verdict::Forward(Box::new(message))
        }
        Err(err) => judge_value(text, &err),
    }
}

/// A well-formed `tools/call` request, read in one typed pass.
#[derive(Deserialize)]
struct CallLine<'a> {
    jsonrpc: JsonRpcVersion2_0,
    id: RequestId,
    #[serde(borrow)]
    method: Cow<'a, str>,
    params: CallToolRequestParams,
}

/// Reads `text` as a `tools/call` request, the message a session sends
/// most, straight into the form rmcp's own reading gives (whose general
/// path tries every message shape in turn, and costs several times more).
/// `None` for anything else, and for a call that is not well formed: the
/// general path reads those and names what is wrong.
fn parse_call(text: &str) -> Option<ClientJsonRpcMessage> {
    let line: CallLine<'_> = serde_json::from_str(text).ok()?;
    if line.method != "tools/call" {
        return None;
    }
    let mut params = line.params;
    let mut request = CallToolRequest::new(CallToolRequestParams::new(""));
    // rmcp keeps a request's `_meta` among its extensions.
    if let Some(meta) = params.meta.take() {
        request.extensions.insert(meta);
    }
    request.params = params;
    Some(JsonRpcMessage::Request(JsonRpcRequest {
        jsonrpc: line.jsonrpc,
        id: line.id,
        request: ClientRequest::CallToolRequest(request),
    }))
}

/// Why a line rmcp could not read is unusable, from its JSON value.
fn judge_value(text: &str, rmcp_error: &serde_json::Error) -> Verdict {
    let value: Value = match serde_json::from_str(text) {
        Ok(value) => value,
        Err(err) => {
            // serde_json names a lone surrogate as a bad hex escape.
            let what = if err.to_string().contains("hex escape") {
                "a string holds a lone UTF-16 surrogate"
            } else {
                "the message is not valid JSON"
            };
            let message = format!(
                "parse error: {what} (line {}, column {})",
                err.line(),
                err.column()
            );
            return Verdict::Answer(error_response(
                recover_id(text.as_bytes()),
                PARSE_ERROR,
                message,
            ));
        }
    };
    let Some(object) = value.as_object() else {
        let message = if value.is_array() {
            "invalid request: batches are not supported; send one message per line"
        } else {
            "invalid request: a message must be a JSON object"
        };
        return Verdict::Answer(error_response(Value::Null, INVALID_REQUEST, message));
    };
    let id = object.get("id").cloned();
    let usable_id = match &id {
        Some(Value::String(_)) => true,
        Some(Value::Number(n)) => n.is_i64(),
        _ => false,
    };
    let invalid = |message: &str| {
        let id = if usable_id {
            id.clone().unwrap_or(Value::Null)
        } else {
            Value::Null
        };
        Verdict::Answer(error_response(
            id,
            INVALID_REQUEST,
            format!("invalid request: {message}"),
        ))
    };
    if object.get("jsonrpc") != Some(&Value::String("2.0".into())) {
        return invalid("`jsonrpc` must be \"2.0\"");
    }
    match (object.get("method"), &id) {
        (Some(Value::String(method)), Some(_)) if !usable_id => invalid(&format!(
            "`id` of `{method}` must be a string or an integer"
        )),
        (Some(Value::String(method)), Some(id)) => {
            let why = if KNOWN_METHODS.contains(&method.as_str()) {
                params_problem(method, object.get("params"))
            } else {
                format!("invalid params for `{method}`: {rmcp_error}")
            };
            Verdict::Answer(error_response(id.clone(), INVALID_PARAMS, why))
        }
        (Some(Value::String(method)), None) => {
            Verdict::Ignore(format!("a malformed `{method}` notification"))
        }
        (Some(_), _) => invalid("`method` must be a string"),
        (None, Some(_)) if object.contains_key("result") || object.contains_key("error") => {
            Verdict::Ignore("a malformed response to a request the server never made".into())
        }
        (None, _) => invalid("a request needs a `method`"),
    }
}

/// What is wrong with the params of a known method.
fn params_problem(method: &str, params: Option<&Value>) -> String {
    let Some(params) = params else {
        return format!("invalid params: `{method}` needs `params`");
    };
    let Some(object) = params.as_object() else {
        return format!("invalid params: `params` of `{method}` must be an object");
    };
    if method == "tools/call" {
        match object.get("name") {
            None => return "invalid params: `params.name` (the tool to call) is missing".into(),
            Some(Value::String(_)) => {}
            Some(_) => return "invalid params: `params.name` must be a string".into(),
        }
        if object
            .get("arguments")
            .is_some_and(|a| !a.is_object() && !a.is_null())
        {
            return "invalid params: `params.arguments` must be an object".into();
        }
        if let Err(err) = serde_json::from_value::<CallToolRequestParams>(params.clone()) {
            return format!("invalid params for `tools/call`: {err}");
        }
    }
    format!("invalid params for `{method}`")
}

/// How deeply arrays and objects nest in `line`, read byte by byte with
/// strings skipped; stops counting once past any sane limit.
fn nesting_depth(line: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &byte in line {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// The request's `id`, read from the top level of a line that may not be
/// valid JSON as a whole: `null` when it cannot be found.
pub fn recover_id(line: &[u8]) -> Value {
    let mut depth = 0usize;
    let mut i = 0;
    let mut expect_key = false;
    while i < line.len() {
        match line[i] {
            b'{' | b'[' => {
                depth += 1;
                expect_key = depth == 1 && line[i] == b'{';
                i += 1;
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b',' => {
                expect_key = depth == 1;
                i += 1;
            }
            b'"' => {
                let end = string_end(line, i);
                if depth == 1 && expect_key && &line[i..end] == b"\"id\"" {
                    return value_after_colon(line, end);
                }
                expect_key = false;
                i = end;
            }
            _ => i += 1,
        }
    }
    Value::Null
}

/// Index just past the string starting at `start` (a `"`).
fn string_end(line: &[u8], start: usize) -> usize {
    let mut escaped = false;
    for (offset, &byte) in line[start + 1..].iter().enumerate() {
        match (escaped, byte) {
            (true, _) => escaped = false,
            (false, b'\\') => escaped = true,
            (false, b'"') => return start + offset + 2,
            _ => {}
        }
    }
    line.len()
}

/// The string or integer after the `:` that follows index `at`.
fn value_after_colon(line: &[u8], at: usize) -> Value {
    let rest = &line[at..];
    let Some(colon) = rest.iter().position(|b| !b.is_ascii_whitespace()) else {
        return Value::Null;
    };
    if rest[colon] != b':' {
        return Value::Null;
    }
    let start = at
        + colon
        + 1
        + rest[colon + 1..]
            .iter()
            .take_while(|b| b.is_ascii_whitespace())
            .count();
    let end = match line.get(start) {
        Some(b'"') => string_end(line, start),
        Some(_) => {
            start
                + line[start..]
                    .iter()
                    .take_while(|b| b.is_ascii_digit() || b"-+.eE".contains(b))
                    .count()
        }
        None => return Value::Null,
    };
    match serde_json::from_slice::<Value>(&line[start..end]) {
        Ok(id @ Value::String(_)) => id,
        Ok(Value::Number(n)) if n.is_i64() => Value::Number(n),
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(line: &str) -> (Value, i64, String) {
        match judge(line.as_bytes(), 64) {
            Verdict::Answer(v) => (
                v["id"].clone(),
                v["error"]["code"].as_i64().unwrap(),
                v["error"]["message"].as_str().unwrap().to_owned(),
            ),
            other => panic!("expected an answer to {line}, got {other:?}"),
        }
    }

    #[test]
    fn a_call_read_in_one_pass_is_what_rmcp_reads() {
        let calls = [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"transform","arguments":{"text":"hi","op":"upper"}}}"#,
            r#"{"id":"a-1","params":{"arguments":{"n":[1,{"x":null}]},"name":"t"},"method":"tools/call","jsonrpc":"2.0"}"#,
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"t","_meta":{"progressToken":5,"io.stockade/idempotency-key":"k"},"arguments":null}}"#,
            r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"t","requestState":"s","inputResponses":{}},"extra":1}"#,
            r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"caf\u00e9"}}"#,
        ];
        for line in calls {
            let fast = parse_call(line).unwrap_or_else(|| panic!("not read in one pass: {line}"));
            let general: ClientJsonRpcMessage = serde_json::from_str(line).unwrap();
            assert_eq!(
                serde_json::to_value(&fast).unwrap(),
                serde_json::to_value(&general).unwrap(),
                "{line}"
            );
            let meta = |m: &ClientJsonRpcMessage| match m {
                JsonRpcMessage::Request(r) => match &r.request {
                    ClientRequest::CallToolRequest(c) => (
                        c.extensions
                            .get::<rmcp::model::RequestMetaObject>()
                            .cloned(),
                        c.params.meta.clone(),
                    ),
                    other => panic!("not a call: {other:?}"),
                },
                other => panic!("not a request: {other:?}"),
            };
            assert_eq!(meta(&fast), meta(&general), "{line}");
        }
        // Everything else is left to the general path.
        for other in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"name":"x"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{}}}"#,
            r#"{"jsonrpc":"1.0","id":1,"method":"tools/call","params":{"name":"x"}}"#,
            r#"{"jsonrpc":"2.0","id":1.5,"method":"tools/call","params":{"name":"x"}}"#,
            r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"x"}}"#,
        ] {
            assert!(parse_call(other).is_none(), "{other}");
        }
    }

    #[test]
    fn every_broken_request_is_answered_with_its_id_and_code() {
        let cases = [
            (
                r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"x","arguments":"a"#,
                7,
                PARSE_ERROR,
            ),
            (
                r#"{"jsonrpc":"2.0","id":"s","method":"tools/call","params":{"name":"x","arguments":{"t":"\ud83d"}}}"#,
                0,
                PARSE_ERROR,
            ),
            (
                r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"x","arguments":[1]}}"#,
                3,
                INVALID_PARAMS,
            ),
            (
                r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"arguments":{}}}"#,
                4,
                INVALID_PARAMS,
            ),
            (
                r#"{"jsonrpc":"2.0","id":5,"method":"tools/call"}"#,
                5,
                INVALID_PARAMS,
            ),
            (
                r#"{"jsonrpc":"1.0","id":6,"method":"tools/list"}"#,
                6,
                INVALID_REQUEST,
            ),
            (
                r#"{"jsonrpc":"2.0","id":8,"method":42}"#,
                8,
                INVALID_REQUEST,
            ),
            (
                r#"[{"jsonrpc":"2.0","id":9,"method":"ping"}]"#,
                -1,
                INVALID_REQUEST,
            ),
            ("not json", -1, PARSE_ERROR),
        ];
        for (line, id, code) in cases {
            let (got_id, got_code, message) = answered(line);
            assert_eq!(got_code, code, "{line}: {message}");
            match id {
                -1 => assert_eq!(got_id, Value::Null, "{line}"),
                0 => assert_eq!(got_id, json!("s"), "{line}"),
                n => assert_eq!(got_id, json!(n), "{line}"),
            }
        }
        let (_, _, message) = answered(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":"a"}}"#,
        );
        assert!(message.contains("params.arguments"), "{message}");
        let (_, _, message) = answered(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"t":"\ud83d"}}}"#,
        );
        assert!(message.contains("surrogate"), "{message}");
    }

    #[test]
    fn deep_and_non_utf8_lines_are_answered() {
        let deep = format!(
            r#"{{"jsonrpc":"2.0","id":11,"method":"tools/call","params":{}1{}}}"#,
            "[".repeat(100),
            "]".repeat(100)
        );
        let (id, code, message) = answered(&deep);
        assert_eq!((id, code), (json!(11), PARSE_ERROR));
        assert!(message.contains("64 levels"), "{message}");
        let mut bytes =
            br#"{"jsonrpc":"2.0","id":12,"method":"tools/call","params":{"name":"#.to_vec();
        bytes.extend_from_slice(b"\"\xff\xfe\"}}");
        let Verdict::Answer(v) = judge(&bytes, 64) else {
            panic!()
        };
        assert_eq!(
            (v["id"].clone(), v["error"]["code"].as_i64()),
            (json!(12), Some(PARSE_ERROR))
        );
    }

    #[test]
    fn responses_go_to_rmcp_and_malformed_notifications_are_ignored() {
        for line in [
            r#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"x"}}"#,
            r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":7}"#,
        ] {
            assert!(
                matches!(
                    judge(line.as_bytes(), 64),
                    Verdict::Ignore(_) | Verdict::Forward(_)
                ),
                "{line}"
            );
        }
        assert!(matches!(
            judge(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#, 64),
            Verdict::Forward(_)
        ));
    }

    #[test]
    fn the_id_is_found_at_the_top_level_only() {
        assert_eq!(
            recover_id(br#"{"params":{"id":1},"id":"top"}"#),
            json!("top")
        );
        assert_eq!(
            recover_id(br#"{"x":"\"id\":5","id" : 6 , broken"#),
            json!(6)
        );
        assert_eq!(recover_id(br#"{"id":1.5}"#), Value::Null);
        assert_eq!(recover_id(b"garbage"), Value::Null);
    }
}
