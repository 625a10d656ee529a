//! The seam between a component's own contract and the host's view of a
//! tool. Everything that turns a component into descriptors and runs a call
//! lives here, one variant per contract, all inside the same sandbox,
//! limits and policy: the `stockade:tool` world (this module), wasmcp
//! tools components ([`wasmcp`]), and components whose exported functions
//! are tools ([`exports`]).

mod exports;
mod wasmcp;
mod wit_json;
#[cfg(test)]
mod wit_json_fuzz;

use serde_json::Value;
use wasmtime::Store;
use wasmtime::component::{Component, HasSelf, Linker};

use crate::call::CallState;
use crate::{ContentItem, ToolDescriptor, ToolFailure, ToolHints, ToolOutput};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "tool-component",
        exports: { default: async },
    });
}

use bindings::exports::stockade::tool::tool as guest;
use bindings::stockade::tool::host;
use bindings::stockade::tool::types;

/// A component that speaks a contract the host knows, pre-instantiated.
#[derive(Clone)]
pub(crate) enum ContractPre {
    /// The `stockade:tool` world.
    Stockade(bindings::ToolComponentPre<CallState>),
    /// Every exported function is a tool (components built for Wassette).
    Exports(exports::ExportsPre),
    /// wasmcp's `tools` interface.
    Wasmcp(wasmcp::WasmcpPre),
}

/// The export that marks a `stockade:tool` component.
const STOCKADE_EXPORT: &str = "stockade:tool/tool@0.1.0";

/// Adds the host side of every contract's own imports to the linker.
pub(crate) fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    host::add_to_linker::<CallState, HasSelf<CallState>>(linker, |state| state)
}

/// Pre-instantiates `component` against the first contract it satisfies.
pub(crate) fn prepare(
    linker: &Linker<CallState>,
    component: &Component,
) -> wasmtime::Result<ContractPre> {
    if component.get_export_index(None, STOCKADE_EXPORT).is_none() {
        if let Some(export) = wasmcp::tools_export(component, linker) {
            return Ok(ContractPre::Wasmcp(wasmcp::prepare(
                linker, component, &export,
            )?));
        }
        return Ok(ContractPre::Exports(exports::prepare(linker, component)?));
    }
    let pre = linker.instantiate_pre(component)?;
    Ok(ContractPre::Stockade(bindings::ToolComponentPre::new(pre)?))
}

/// Why a component's tool list could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DescribeError {
    /// A schema the component gave is not JSON.
    #[error("tool `{tool}`: {which} is not valid JSON: {reason}")]
    BadSchema {
        /// The tool.
        tool: String,
        /// `input schema` or `output schema`.
        which: &'static str,
        /// The parser's message.
        reason: String,
    },
    /// The component answered the listing with something unusable.
    #[error("{0}")]
    Listing(String),
}

/// Asks a fresh instance for its tools.
pub(crate) async fn describe(
    pre: &ContractPre,
    store: &mut Store<CallState>,
) -> wasmtime::Result<Result<Vec<ToolDescriptor>, DescribeError>> {
    match pre {
        ContractPre::Stockade(pre) => {
            let instance = pre.instantiate_async(&mut *store).await?;
            let list = instance.stockade_tool_tool().call_list(&mut *store).await?;
            Ok(list.into_iter().map(descriptor).collect())
        }
        ContractPre::Exports(pre) => Ok(Ok(exports::describe(pre))),
        ContractPre::Wasmcp(pre) => wasmcp::describe(pre, store).await,
    }
}

/// Runs one tool in a fresh instance.
pub(crate) async fn invoke(
    pre: &ContractPre,
    store: &mut Store<CallState>,
    name: &str,
    arguments: &str,
) -> wasmtime::Result<Result<ToolOutput, ToolFailure>> {
    match pre {
        ContractPre::Stockade(pre) => {
            let instance = pre.instantiate_async(&mut *store).await?;
            let result = instance
                .stockade_tool_tool()
                .call_call(&mut *store, name, arguments)
                .await?;
            Ok(result.map(output).map_err(failure))
        }
        ContractPre::Exports(pre) => exports::invoke(pre, store, name, arguments).await,
        ContractPre::Wasmcp(pre) => wasmcp::invoke(pre, store, name, arguments).await,
    }
}

pub(crate) fn parse_schema(
    tool: &str,
    which: &'static str,
    text: &str,
) -> Result<Value, DescribeError> {
    serde_json::from_str(text).map_err(|err| DescribeError::BadSchema {
        tool: tool.to_owned(),
        which,
        reason: err.to_string(),
    })
}

fn descriptor(d: guest::Descriptor) -> Result<ToolDescriptor, DescribeError> {
    let input_schema = parse_schema(&d.name, "input schema", &d.input_schema)?;
    let output_schema = d
        .output_schema
        .as_deref()
        .map(|s| parse_schema(&d.name, "output schema", s))
        .transpose()?;
    Ok(ToolDescriptor {
        name: d.name,
        title: d.title,
        description: d.description,
        input_schema,
        output_schema,
        hints: ToolHints {
            read_only: d.hints.read_only,
            destructive: d.hints.destructive,
            idempotent: d.hints.idempotent,
            open_world: d.hints.open_world,
        },
    })
}

fn output(o: types::Output) -> ToolOutput {
    ToolOutput {
        content: o
            .content
            .into_iter()
            .map(|c| match c {
                types::Content::Text(t) => ContentItem::Text(t),
                types::Content::Json(j) => ContentItem::Json(j),
                types::Content::Image(i) => ContentItem::Image {
                    data: i.data,
                    mime_type: i.mime_type,
                },
                types::Content::Audio(a) => ContentItem::Audio {
                    data: a.data,
                    mime_type: a.mime_type,
                },
                types::Content::Embedded(r) => ContentItem::Resource {
                    uri: r.uri,
                    mime_type: r.mime_type,
                    body: match r.body {
                        types::ResourceBody::Text(t) => crate::ResourceBody::Text(t),
                        types::ResourceBody::Blob(b) => crate::ResourceBody::Blob(b),
                    },
                },
            })
            .collect(),
        structured: o.structured,
        truncated: false,
    }
}

fn failure(e: types::ToolError) -> ToolFailure {
    match e {
        types::ToolError::InvalidInput(m) => ToolFailure::InvalidInput(m),
        types::ToolError::Denied(m) => ToolFailure::Denied(m),
        types::ToolError::Failed(m) => ToolFailure::Failed(m),
    }
}

impl host::Host for CallState {
    fn caller(&mut self) -> host::CallerIdentity {
        host::CallerIdentity {
            client: self.caller.client.clone(),
            user: self.caller.user.clone(),
            groups: self.caller.groups.clone(),
        }
    }

    fn log(&mut self, level: host::Level, message: String) {
        use crate::log::GuestLevel;
        let level = match level {
            host::Level::Trace => GuestLevel::Trace,
            host::Level::Debug => GuestLevel::Debug,
            host::Level::Info => GuestLevel::Info,
            host::Level::Warn => GuestLevel::Warn,
            host::Level::Error => GuestLevel::Error,
        };
        self.log.write(level, &message);
    }
}
