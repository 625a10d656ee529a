//! Tools components of wasmcp: a component that exports
//! `wasmcp:mcp-v20251125/tools@0.1.x` (`list-tools` and `call-tool`, each
//! given a message context). The values are built and read by field name
//! from the component's own types, so a later 0.1 release that adds
//! optional fields still fits.
//!
//! The message context a tool gets is the protocol version alone: no
//! stream to the client, no session, no identity, no HTTP context. What a
//! wasmcp host offers beyond that (server-side sessions, notifications,
//! streaming to the client) Stockade does not provide: a component that
//! imports any wasmcp interface with functions is refused at load, naming
//! the import, and streamed text or bytes in a result are refused at call.

use std::sync::Arc;

use wasmtime::Store;
use wasmtime::component::types::{ComponentItem, Type};
use wasmtime::component::{Component, ComponentExportIndex, InstancePre, Linker, Val};

use super::{DescribeError, parse_schema};
use crate::call::CallState;
use crate::{ContentItem, ResourceBody, ToolDescriptor, ToolFailure, ToolHints, ToolOutput};

/// The interface a wasmcp tools component exports, any 0.1 release.
const TOOLS_EXPORT: &str = "wasmcp:mcp-v20251125/tools@0.1.";

/// The MCP version the message context names.
const PROTOCOL_VERSION: &str = "2025-11-25";

/// Pages of `list-tools` read at most (a component that always returns a
/// next cursor must not hold the host).
const MAX_PAGES: usize = 100;

/// A wasmcp tools component, pre-instantiated.
#[derive(Clone)]
pub(crate) struct WasmcpPre {
    pre: InstancePre<CallState>,
    list: ComponentExportIndex,
    call: ComponentExportIndex,
    /// The arguments every call starts from, built once from the
    /// component's own types.
    templates: Arc<Templates>,
}

/// The message context and the empty request of `list-tools` and of
/// `call-tool`, each of the type the component declares.
struct Templates {
    list_context: Val,
    list_request: Val,
    call_context: Val,
    call_request: Val,
}

/// The name of the wasmcp tools interface `component` exports, if any.
pub(crate) fn tools_export(component: &Component, linker: &Linker<CallState>) -> Option<String> {
    component
        .component_type()
        .exports(linker.engine())
        .map(|(name, _)| name)
        .find(|name| name.starts_with(TOOLS_EXPORT))
        .map(str::to_owned)
}

/// Checks what the component imports and pre-instantiates it.
pub(crate) fn prepare(
    linker: &Linker<CallState>,
    component: &Component,
    export: &str,
) -> wasmtime::Result<WasmcpPre> {
    let engine = linker.engine();
    let ty = component.component_type();
    for (name, item) in ty.imports(engine) {
        if let ComponentItem::ComponentInstance(instance) = item.ty
            && name.starts_with("wasmcp:")
            && instance
                .exports(engine)
                .any(|(_, item)| matches!(item.ty, ComponentItem::ComponentFunc(_)))
        {
            wasmtime::bail!(
                "it imports `{name}`, a wasmcp host interface (server-side sessions, \
                 notifications or streaming to the client), which Stockade does not provide: \
                 a tool answers with its result alone"
            );
        }
    }
    let Some(ComponentItem::ComponentInstance(tools)) = ty
        .exports(engine)
        .find(|(name, _)| *name == export)
        .map(|(_, item)| item.ty)
    else {
        wasmtime::bail!("export `{export}` is not an interface");
    };
    let params = |function: &str| -> wasmtime::Result<Vec<Type>> {
        match tools
            .exports(engine)
            .find(|(name, _)| *name == function)
            .map(|(_, item)| item.ty)
        {
            Some(ComponentItem::ComponentFunc(func)) => {
                Ok(func.params().map(|(_, ty)| ty).collect())
            }
            _ => wasmtime::bail!("`{export}` has no function `{function}`"),
        }
    };
    let (list_params, call_params) = (params("list-tools")?, params("call-tool")?);
    if list_params.len() != 2 || call_params.len() != 2 {
        wasmtime::bail!("`{export}`: list-tools and call-tool take a context and a request");
    }
    let parent = component
        .get_export_index(None, export)
        .ok_or_else(|| wasmtime::format_err!("export `{export}` has no index"))?;
    let index = |function: &str| {
        component
            .get_export_index(Some(&parent), function)
            .ok_or_else(|| wasmtime::format_err!("`{export}#{function}` has no index"))
    };
    let templates = Templates {
        list_context: context_of(&list_params[0])?,
        list_request: default_of(&list_params[1])?,
        call_context: context_of(&call_params[0])?,
        call_request: default_of(&call_params[1])?,
    };
    Ok(WasmcpPre {
        list: index("list-tools")?,
        call: index("call-tool")?,
        pre: linker.instantiate_pre(component)?,
        templates: Arc::new(templates),
    })
}

/// Lists the component's tools in a fresh instance, page by page.
pub(crate) async fn describe(
    pre: &WasmcpPre,
    store: &mut Store<CallState>,
) -> wasmtime::Result<Result<Vec<ToolDescriptor>, DescribeError>> {
    let instance = pre.pre.instantiate_async(&mut *store).await?;
    let func = instance
        .get_func(&mut *store, pre.list)
        .ok_or_else(|| wasmtime::format_err!("the instance lacks list-tools"))?;
    let context = &pre.templates.list_context;
    let mut tools = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let request = with_field(
            pre.templates.list_request.clone(),
            "cursor",
            Val::Option(cursor.take().map(|c| Box::new(Val::String(c)))),
        );
        let mut results = [Val::Bool(false)];
        func.call_async(&mut *store, &[context.clone(), request], &mut results)
            .await?;
        let page = match &results[0] {
            Val::Result(Ok(Some(page))) => page.as_ref(),
            Val::Result(Err(Some(code))) => {
                let why = format!("list-tools failed: {}", error_text(code));
                return Ok(Err(DescribeError::Listing(why)));
            }
            other => {
                let why = format!("list-tools returned {other:?}");
                return Ok(Err(DescribeError::Listing(why)));
            }
        };
        if let Some(Val::List(listed)) = field(page, "tools") {
            for tool in listed {
                match descriptor(tool) {
                    Ok(tool) => tools.push(tool),
                    Err(err) => return Ok(Err(err)),
                }
            }
        }
        match field(page, "next-cursor") {
            Some(Val::Option(Some(next))) => cursor = string_of(next).map(str::to_owned),
            _ => return Ok(Ok(tools)),
        }
        if cursor.is_none() {
            return Ok(Ok(tools));
        }
    }
    Ok(Err(DescribeError::Listing(format!(
        "list-tools gave more than {MAX_PAGES} pages"
    ))))
}

/// Runs tool `name` in a fresh instance.
pub(crate) async fn invoke(
    pre: &WasmcpPre,
    store: &mut Store<CallState>,
    name: &str,
    arguments: &str,
) -> wasmtime::Result<Result<ToolOutput, ToolFailure>> {
    let context = pre.templates.call_context.clone();
    let request = with_field(
        with_field(
            pre.templates.call_request.clone(),
            "name",
            Val::String(name.to_owned()),
        ),
        "arguments",
        Val::Option(Some(Box::new(Val::String(arguments.to_owned())))),
    );
    let instance = pre.pre.instantiate_async(&mut *store).await?;
    let func = instance
        .get_func(&mut *store, pre.call)
        .ok_or_else(|| wasmtime::format_err!("the instance lacks call-tool"))?;
    let mut results = [Val::Bool(false)];
    func.call_async(&mut *store, &[context, request], &mut results)
        .await?;
    Ok(match &results[0] {
        Val::Result(Ok(Some(answer))) => match answer.as_ref() {
            Val::Option(Some(result)) => output(result),
            _ => Err(ToolFailure::InvalidInput(format!("no tool named `{name}`"))),
        },
        Val::Result(Err(Some(code))) => Err(match code.as_ref() {
            Val::Variant(tag, _) if tag == "invalid-params" => {
                ToolFailure::InvalidInput(error_text(code))
            }
            _ => ToolFailure::Failed(error_text(code)),
        }),
        other => Err(ToolFailure::Failed(format!("call-tool returned {other:?}"))),
    })
}

/// The message context: the protocol version, nothing else.
fn context_of(ty: &Type) -> wasmtime::Result<Val> {
    Ok(with_field(
        default_of(ty)?,
        "protocol-version",
        Val::String(PROTOCOL_VERSION.to_owned()),
    ))
}

/// The emptiest value of `ty`: `none`, empty lists and strings, zeros,
/// the first case.
fn default_of(ty: &Type) -> wasmtime::Result<Val> {
    Ok(match ty {
        Type::Bool => Val::Bool(false),
        Type::S8 => Val::S8(0),
        Type::U8 => Val::U8(0),
        Type::S16 => Val::S16(0),
        Type::U16 => Val::U16(0),
        Type::S32 => Val::S32(0),
        Type::U32 => Val::U32(0),
        Type::S64 => Val::S64(0),
        Type::U64 => Val::U64(0),
        Type::Float32 => Val::Float32(0.0),
        Type::Float64 => Val::Float64(0.0),
        Type::Char => Val::Char(' '),
        Type::String => Val::String(String::new()),
        Type::List(_) => Val::List(Vec::new()),
        Type::Map(_) => Val::Map(Vec::new()),
        Type::Option(_) => Val::Option(None),
        Type::Flags(_) => Val::Flags(Vec::new()),
        Type::Enum(names) => Val::Enum(
            names
                .names()
                .next()
                .ok_or_else(|| wasmtime::format_err!("an enum without cases"))?
                .to_owned(),
        ),
        Type::Record(record) => Val::Record(
            record
                .fields()
                .map(|f| Ok((f.name.to_owned(), default_of(&f.ty)?)))
                .collect::<wasmtime::Result<_>>()?,
        ),
        Type::Tuple(tuple) => Val::Tuple(
            tuple
                .types()
                .map(|t| default_of(&t))
                .collect::<wasmtime::Result<_>>()?,
        ),
        Type::FixedLengthList(list) => Val::FixedLengthList(
            (0..list.len())
                .map(|_| default_of(&list.ty()))
                .collect::<wasmtime::Result<_>>()?,
        ),
        Type::Variant(variant) => {
            let case = variant
                .cases()
                .next()
                .ok_or_else(|| wasmtime::format_err!("a variant without cases"))?;
            let payload = case.ty.map(|t| default_of(&t)).transpose()?.map(Box::new);
            Val::Variant(case.name.to_owned(), payload)
        }
        Type::Result(result) => Val::Result(Ok(result
            .ok()
            .map(|t| default_of(&t))
            .transpose()?
            .map(Box::new))),
        Type::Own(_) | Type::Borrow(_) | Type::Future(_) | Type::Stream(_) | Type::ErrorContext => {
            wasmtime::bail!("a request field of type {ty:?} has no default")
        }
    })
}

/// `record` with field `name` set to `value` (unchanged if it has none).
fn with_field(record: Val, name: &str, value: Val) -> Val {
    match record {
        Val::Record(fields) => Val::Record(
            fields
                .into_iter()
                .map(|(n, v)| {
                    if n == name {
                        (n, value.clone())
                    } else {
                        (n, v)
                    }
                })
                .collect(),
        ),
        other => other,
    }
}

/// Field `name` of a record.
fn field<'a>(record: &'a Val, name: &str) -> Option<&'a Val> {
    match record {
        Val::Record(fields) => fields.iter().find(|(n, _)| n == name).map(|(_, v)| v),
        _ => None,
    }
}

/// Field `name` of a record, inside an `option` when it is one.
fn optional<'a>(record: &'a Val, name: &str) -> Option<&'a Val> {
    match field(record, name)? {
        Val::Option(inner) => inner.as_deref(),
        other => Some(other),
    }
}

fn string_of(val: &Val) -> Option<&str> {
    match val {
        Val::String(s) => Some(s),
        _ => None,
    }
}

fn bool_of(val: Option<&Val>) -> bool {
    matches!(val, Some(Val::Bool(true)))
}

/// `class: message` of a wasmcp error code.
fn error_text(code: &Val) -> String {
    match code {
        Val::Variant(tag, Some(error)) => {
            let message = field(error, "message").and_then(string_of).unwrap_or("");
            format!("{tag}: {message}")
        }
        Val::Variant(tag, None) => tag.clone(),
        other => format!("{other:?}"),
    }
}

/// One listed tool as a descriptor.
fn descriptor(tool: &Val) -> Result<ToolDescriptor, DescribeError> {
    let name = field(tool, "name")
        .and_then(string_of)
        .ok_or_else(|| DescribeError::Listing("a listed tool has no name".to_owned()))?;
    let schema_text = field(tool, "input-schema")
        .and_then(string_of)
        .unwrap_or("");
    let input_schema = parse_schema(name, "input schema", schema_text)?;
    let options = optional(tool, "options");
    let text = |key: &str| {
        options
            .and_then(|o| optional(o, key))
            .and_then(string_of)
            .map(str::to_owned)
    };
    let output_schema = text("output-schema")
        .map(|s| parse_schema(name, "output schema", &s))
        .transpose()?;
    let annotations = options.and_then(|o| optional(o, "annotations"));
    let hint = |key: &str| bool_of(annotations.and_then(|a| optional(a, key)));
    Ok(ToolDescriptor {
        name: name.to_owned(),
        title: text("title"),
        description: text("description").unwrap_or_default(),
        input_schema,
        output_schema,
        hints: ToolHints {
            read_only: hint("read-only-hint"),
            destructive: hint("destructive-hint"),
            idempotent: hint("idempotent-hint"),
            open_world: hint("open-world-hint"),
        },
    })
}

/// A `call-tool-result` as the host's output, or a failure when it says
/// it is an error.
fn output(result: &Val) -> Result<ToolOutput, ToolFailure> {
    let mut content = Vec::new();
    if let Some(Val::List(blocks)) = field(result, "content") {
        for block in blocks {
            content.push(content_item(block)?);
        }
    }
    if bool_of(optional(result, "is-error")) {
        let message: Vec<String> = content
            .iter()
            .filter_map(|c| match c {
                ContentItem::Text(t) | ContentItem::Json(t) => Some(t.clone()),
                _ => None,
            })
            .collect();
        return Err(ToolFailure::Failed(message.join("\n")));
    }
    Ok(ToolOutput {
        content,
        structured: optional(result, "structured-content")
            .and_then(string_of)
            .map(str::to_owned),
        truncated: false,
    })
}

/// Inline text of a `text-data`; streamed text is refused.
fn inline_text(data: Option<&Val>) -> Result<String, ToolFailure> {
    match data {
        Some(Val::Variant(tag, Some(text))) if tag == "text" => {
            Ok(string_of(text).unwrap_or_default().to_owned())
        }
        _ => Err(streamed()),
    }
}

/// Inline bytes of a `blob-data`; streamed bytes are refused.
fn inline_bytes(data: Option<&Val>) -> Result<Vec<u8>, ToolFailure> {
    match data {
        Some(Val::Variant(tag, Some(bytes))) if tag == "blob" => match bytes.as_ref() {
            Val::List(items) => Ok(items
                .iter()
                .filter_map(|b| match b {
                    Val::U8(b) => Some(*b),
                    _ => None,
                })
                .collect()),
            _ => Err(streamed()),
        },
        _ => Err(streamed()),
    }
}

fn streamed() -> ToolFailure {
    ToolFailure::Failed(
        "the tool streamed its result (text-stream or blob-stream), which Stockade does not \
         relay: a result must be inline"
            .to_owned(),
    )
}

fn content_item(block: &Val) -> Result<ContentItem, ToolFailure> {
    let Val::Variant(tag, Some(item)) = block else {
        return Err(ToolFailure::Failed(format!(
            "unreadable content block {block:?}"
        )));
    };
    let item = item.as_ref();
    Ok(match tag.as_str() {
        "text" => ContentItem::Text(inline_text(field(item, "text"))?),
        "image" | "audio" => {
            let data = inline_bytes(field(item, "data"))?;
            let mime_type = field(item, "mime-type")
                .and_then(string_of)
                .unwrap_or_default()
                .to_owned();
            if tag == "image" {
                ContentItem::Image { data, mime_type }
            } else {
                ContentItem::Audio { data, mime_type }
            }
        }
        "resource-link" => {
            let uri = field(item, "uri").and_then(string_of).unwrap_or_default();
            let name = field(item, "name").and_then(string_of).unwrap_or_default();
            ContentItem::Text(format!("{name}: {uri}"))
        }
        "embedded-resource" => {
            let Some(Val::Variant(kind, Some(contents))) = field(item, "resource") else {
                return Err(ToolFailure::Failed(
                    "unreadable embedded resource".to_owned(),
                ));
            };
            let contents = contents.as_ref();
            let uri = field(contents, "uri")
                .and_then(string_of)
                .unwrap_or_default()
                .to_owned();
            let mime_type = optional(contents, "options")
                .and_then(|o| optional(o, "mime-type"))
                .and_then(string_of)
                .map(str::to_owned);
            let body = if kind == "text" {
                ResourceBody::Text(inline_text(field(contents, "text"))?)
            } else {
                ResourceBody::Blob(inline_bytes(field(contents, "blob"))?)
            };
            ContentItem::Resource {
                uri,
                mime_type,
                body,
            }
        }
        other => {
            return Err(ToolFailure::Failed(format!(
                "unknown content block `{other}`"
            )));
        }
    })
}
