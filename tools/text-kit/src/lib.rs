//! Pure computation on text and JSON: no files, no network.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use stockade_sdk::{Output, Tool, ToolError, Toolbox};

/// What `transform` does to the text.
#[derive(Deserialize, JsonSchema, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// UPPER CASE.
    Upper,
    /// lower case.
    Lower,
    /// Characters in reverse order.
    Reverse,
    /// Leading and trailing whitespace removed.
    Trim,
    /// a-url-friendly-slug.
    Slug,
}

/// Arguments of `transform`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TransformArgs {
    /// The text to transform.
    pub text: String,
    /// The operation to apply.
    pub op: Operation,
}

/// Arguments of `stats`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatsArgs {
    /// The text to measure.
    pub text: String,
}

/// Result of `stats`.
#[derive(Serialize, JsonSchema)]
pub struct Stats {
    /// Unicode scalar values.
    pub chars: usize,
    /// Whitespace-separated words.
    pub words: usize,
    /// Lines.
    pub lines: usize,
    /// UTF-8 bytes.
    pub bytes: usize,
}

/// Arguments of `json_pick`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PickArgs {
    /// A JSON document, as text.
    pub json: String,
    /// An RFC 6901 JSON Pointer, e.g. `/items/0/name`.
    pub pointer: String,
}

/// Applies `op` to `text`.
pub fn transform(text: &str, op: Operation) -> String {
    match op {
        Operation::Upper => text.to_uppercase(),
        Operation::Lower => text.to_lowercase(),
        Operation::Reverse => text.chars().rev().collect(),
        Operation::Trim => text.trim().to_owned(),
        Operation::Slug => text
            .to_lowercase()
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>()
            .join("-"),
    }
}

/// Measures `text`.
pub fn stats(text: &str) -> Stats {
    Stats {
        chars: text.chars().count(),
        words: text.split_whitespace().count(),
        lines: text.lines().count(),
        bytes: text.len(),
    }
}

/// Picks the value at `pointer` in the JSON document `json`.
pub fn json_pick(json: &str, pointer: &str) -> Result<serde_json::Value, ToolError> {
    let doc: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| ToolError::InvalidInput(format!("json: not valid JSON: {e}")))?;
    doc.pointer(pointer)
        .cloned()
        .ok_or_else(|| ToolError::InvalidInput(format!("pointer: nothing at `{pointer}`")))
}

/// The text-kit tools.
pub struct TextKit;

impl Toolbox for TextKit {
    fn tools() -> Vec<Tool> {
        vec![
            Tool::new(
                "transform",
                "Transform text: upper, lower, reverse, trim or slug.",
                |a: TransformArgs| Ok(Output::text(transform(&a.text, a.op))),
            )
            .title("Transform text")
            .read_only()
            .idempotent(),
            Tool::new(
                "stats",
                "Count characters, words, lines and bytes of a text.",
                |a: StatsArgs| Output::json(&stats(&a.text)),
            )
            .title("Text statistics")
            .output::<Stats>()
            .read_only()
            .idempotent(),
            Tool::new(
                "json_pick",
                "Return the value at a JSON Pointer inside a JSON document.",
                |a: PickArgs| Ok(Output::text(json_pick(&a.json, &a.pointer)?.to_string())),
            )
            .title("Pick from JSON")
            .read_only()
            .idempotent(),
        ]
    }
}

// Exported only in the component: natively (the benchmark links this crate
// as a library) the export symbols would not link into the cdylib.
#[cfg(target_arch = "wasm32")]
stockade_sdk::export_toolbox!(TextKit);
