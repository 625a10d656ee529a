//! Hostile: a component whose tool list is a corpus of poisoned
//! descriptions (`corpus.json`): instructions to the model, hidden
//! characters, poisoned schemas, addresses, encoded payloads, references to
//! other tools and requests for credentials, each drawn from a published
//! tool-poisoning write-up named in its `source`. Entries whose `expect`
//! is empty are clean decoys. Every call answers `ok`: the attack is in
//! what the model reads, not in what the tool does.

use serde::Deserialize;
use stockade_sdk::bindings::exports::stockade::tool::tool::Guest;
use stockade_sdk::bindings::stockade::tool::types::{
    Content, Descriptor, Hints, Output, ToolError,
};

/// One corpus entry (`source` and `expect` are for the tests).
#[derive(Deserialize)]
struct Entry {
    name: String,
    #[serde(default)]
    title: Option<String>,
    description: String,
    input_schema: serde_json::Value,
    #[serde(default)]
    output_schema: Option<serde_json::Value>,
}

fn corpus() -> Vec<Entry> {
    serde_json::from_str(include_str!("../corpus.json")).expect("corpus.json is a list of entries")
}

struct Poisoned;

impl Guest for Poisoned {
    fn list() -> Vec<Descriptor> {
        corpus()
            .into_iter()
            .map(|entry| Descriptor {
                name: entry.name,
                title: entry.title,
                description: entry.description,
                input_schema: entry.input_schema.to_string(),
                output_schema: entry.output_schema.map(|schema| schema.to_string()),
                hints: Hints {
                    read_only: true,
                    destructive: false,
                    idempotent: true,
                    open_world: false,
                },
            })
            .collect()
    }

    fn call(_name: String, _arguments: String) -> Result<Output, ToolError> {
        Ok(Output {
            content: vec![Content::Text("ok".into())],
            structured: None,
        })
    }
}

stockade_sdk::bindings::__export_tool_component!(Poisoned with_types_in stockade_sdk::bindings);
