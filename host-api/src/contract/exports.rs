//! Components built for other WebAssembly MCP hosts (Wassette-style): every
//! exported function is a tool. Its input schema comes from the WIT
//! parameter types, arguments are converted to WIT values (errors name the
//! field), and its results come back as the structured result
//! `{"result": ...}` (several results as `val0`, `val1`, ...). A function
//! that returns a `result` whose error case comes back is an error result
//! (`isError`), its payload the message.
//!
//! Tool names follow Wassette's: a function exported by the world keeps its
//! name; one in an exported interface is `<interface>_<function>`, lower
//! case, with `:`, `/`, `.` and `@` as `_`. Interfaces of `wasi:` are entry
//! points for other hosts, not tools, and are skipped.

use std::sync::Arc;

use serde_json::{Map, Value, json};
use wasmtime::Store;
use wasmtime::component::types::{ComponentFunc, ComponentItem, Type};
use wasmtime::component::{Component, ComponentExportIndex, InstancePre, Linker, Val};

use super::wit_json;
use crate::call::CallState;
use crate::{ContentItem, ToolDescriptor, ToolFailure, ToolHints, ToolOutput};

/// A component whose exported functions are its tools, pre-instantiated.
#[derive(Clone)]
pub(crate) struct ExportsPre {
    pre: InstancePre<CallState>,
    tools: Arc<Vec<ExportedTool>>,
}

/// One exported function, as a tool.
struct ExportedTool {
    descriptor: ToolDescriptor,
    index: ComponentExportIndex,
    params: Vec<(String, Type)>,
    results: usize,
}

/// Reads the tools of `component` from its exports and pre-instantiates it.
pub(crate) fn prepare(
    linker: &Linker<CallState>,
    component: &Component,
) -> wasmtime::Result<ExportsPre> {
    let engine = linker.engine();
    let mut tools: Vec<ExportedTool> = Vec::new();
    for (export, item) in component.component_type().exports(engine) {
        match item.ty {
            ComponentItem::ComponentFunc(func) => {
                let index = component
                    .get_export_index(None, export)
                    .ok_or_else(|| wasmtime::format_err!("export `{export}` has no index"))?;
                tools.push(tool(&normalize(export), export, index, &func)?);
            }
            ComponentItem::ComponentInstance(instance) if !export.starts_with("wasi:") => {
                let parent = component
                    .get_export_index(None, export)
                    .ok_or_else(|| wasmtime::format_err!("export `{export}` has no index"))?;
                for (name, item) in instance.exports(engine) {
                    if let ComponentItem::ComponentFunc(func) = item.ty {
                        let index =
                            component
                                .get_export_index(Some(&parent), name)
                                .ok_or_else(|| {
                                    wasmtime::format_err!("export `{export}#{name}` has no index")
                                })?;
                        let tool_name = format!("{}_{}", normalize(export), normalize(name));
                        tools.push(tool(&tool_name, &format!("{export}#{name}"), index, &func)?);
                    }
                }
            }
            _ => {}
        }
    }
    if tools.is_empty() {
        wasmtime::bail!(
            "it exports neither `stockade:tool/tool` nor any function (a component built for \
             another host exports its tools as functions)"
        );
    }
    let mut names: Vec<&str> = tools.iter().map(|t| t.descriptor.name.as_str()).collect();
    names.sort_unstable();
    if let Some(twice) = names.windows(2).find(|w| w[0] == w[1]) {
        wasmtime::bail!(
            "two exported functions are both named `{}` as tools",
            twice[0]
        );
    }
    Ok(ExportsPre {
        pre: linker.instantiate_pre(component)?,
        tools: Arc::new(tools),
    })
}

/// The tool for exported function `func`.
fn tool(
    name: &str,
    export: &str,
    index: ComponentExportIndex,
    func: &ComponentFunc,
) -> wasmtime::Result<ExportedTool> {
    let mut properties = Map::new();
    let mut required = Vec::new();
    let mut params = Vec::new();
    for (param, ty) in func.params() {
        let schema = wit_json::schema_of(&ty).map_err(|why| {
            wasmtime::format_err!("function `{export}`, parameter `{param}`: {why}")
        })?;
        properties.insert(param.to_owned(), schema);
        // An `option` may be left out: it is then `none`.
        if !matches!(ty, Type::Option(_)) {
            required.push(param.to_owned());
        }
        params.push((param.to_owned(), ty));
    }
    let results: Vec<Type> = func.results().collect();
    let mut result_schemas = Vec::new();
    for ty in &results {
        result_schemas.push(
            wit_json::schema_of(ty)
                .map_err(|why| wasmtime::format_err!("function `{export}`, result: {why}"))?,
        );
    }
    let output_schema = match result_schemas.len() {
        0 => None,
        1 => Some(envelope(result_schemas.remove(0))),
        _ => {
            let named: Map<String, Value> = result_schemas
                .into_iter()
                .enumerate()
                .map(|(i, s)| (format!("val{i}"), s))
                .collect();
            let keys: Vec<String> = named.keys().cloned().collect();
            Some(envelope(json!({
                "type": "object",
                "properties": named,
                "required": keys,
                "additionalProperties": false,
            })))
        }
    };
    Ok(ExportedTool {
        descriptor: ToolDescriptor {
            name: name.to_owned(),
            title: None,
            description: format!("Calls `{export}`, a function this component exports."),
            input_schema: json!({
                "type": "object",
                "properties": properties,
                "required": required,
                "additionalProperties": false,
            }),
            output_schema,
            hints: ToolHints::default(),
        },
        index,
        params,
        results: results.len(),
    })
}

fn envelope(result: Value) -> Value {
    json!({
        "type": "object",
        "properties": { "result": result },
        "required": ["result"],
    })
}

/// A WIT name as part of a tool name: lower case, `:`, `/`, `.` and `@`
/// (and anything else outside `[a-z0-9-]`) as `_`.
fn normalize(name: &str) -> String {
    name.chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '-') => c,
            _ => '_',
        })
        .collect()
}

/// The tools this component's exports make.
pub(crate) fn describe(pre: &ExportsPre) -> Vec<ToolDescriptor> {
    pre.tools.iter().map(|t| t.descriptor.clone()).collect()
}

/// Runs exported function `name` in a fresh instance.
pub(crate) async fn invoke(
    pre: &ExportsPre,
    store: &mut Store<CallState>,
    name: &str,
    arguments: &str,
) -> wasmtime::Result<Result<ToolOutput, ToolFailure>> {
    let Some(tool) = pre.tools.iter().find(|t| t.descriptor.name == name) else {
        return Ok(Err(ToolFailure::InvalidInput(format!(
            "no tool named `{name}`"
        ))));
    };
    let params = match arguments_of(tool, arguments) {
        Ok(params) => params,
        Err(why) => return Ok(Err(ToolFailure::InvalidInput(why))),
    };
    let instance = pre.pre.instantiate_async(&mut *store).await?;
    let func = instance
        .get_func(&mut *store, tool.index)
        .ok_or_else(|| wasmtime::format_err!("the instance lacks export `{name}`"))?;
    let mut results = vec![Val::Bool(false); tool.results];
    func.call_async(&mut *store, &params, &mut results).await?;
    Ok(output(results))
}

/// The WIT values of the call's JSON arguments, in parameter order.
fn arguments_of(tool: &ExportedTool, arguments: &str) -> Result<Vec<Val>, String> {
    let value: Value =
        serde_json::from_str(arguments).map_err(|err| format!("arguments are not JSON: {err}"))?;
    let given = value
        .as_object()
        .ok_or_else(|| "arguments must be a JSON object".to_owned())?;
    if let Some(extra) = given
        .keys()
        .find(|k| !tool.params.iter().any(|(p, _)| p == *k))
    {
        return Err(format!("`{extra}`: is not a parameter of this tool"));
    }
    tool.params
        .iter()
        .map(|(param, ty)| match given.get(param) {
            Some(v) => wit_json::to_val(v, ty, param).map_err(|e| e.to_string()),
            None if matches!(ty, Type::Option(_)) => Ok(Val::Option(None)),
            None => Err(format!("`{param}`: is required")),
        })
        .collect()
}

/// The call's result: an error when a single `result` came back as its
/// error case, otherwise the Wassette envelope.
fn output(mut results: Vec<Val>) -> Result<ToolOutput, ToolFailure> {
    let value = match results.len() {
        0 => {
            return Ok(ToolOutput {
                content: vec![ContentItem::Text("done".to_owned())],
                structured: None,
                truncated: false,
            });
        }
        1 => {
            let only = results.remove(0);
            if let Val::Result(Err(payload)) = &only {
                let message = payload.as_deref().map(wit_json::to_json).map_or_else(
                    || "the function returned an error".to_owned(),
                    |v| text_of(&v),
                );
                return Err(ToolFailure::Failed(message));
            }
            wit_json::to_json(&only)
        }
        _ => Value::Object(
            results
                .iter()
                .enumerate()
                .map(|(i, v)| (format!("val{i}"), wit_json::to_json(v)))
                .collect(),
        ),
    };
    let shown = match &value {
        Value::Object(ok) if ok.len() == 1 && ok.contains_key("ok") => text_of(&ok["ok"]),
        other => text_of(other),
    };
    Ok(ToolOutput {
        content: vec![ContentItem::Text(shown)],
        structured: Some(json!({ "result": value }).to_string()),
        truncated: false,
    })
}

/// A string as itself; anything else as JSON text.
fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
