//! What of a call's arguments an audit record keeps: the structure, with
//! values masked where the tool's schema marks them sensitive
//! (`writeOnly: true`, `format: "password"` or `x-sensitive: true`), where
//! they hold a credential the host has injected, and cut past a size cap.

use serde_json::{Map, Value};
use stockade_host_api::secrets::Scrubber;

/// Entries kept of one object or array.
const MAX_ENTRIES: usize = 64;

/// Levels of nesting kept.
const MAX_DEPTH: usize = 16;

/// What replaces a value the schema marks sensitive.
pub const SENSITIVE: &str = "[masked: sensitive]";

/// What replaces a value that holds an injected credential.
pub const SECRET: &str = "[masked: secret]";

/// How values are masked.
pub struct Masking<'a> {
    /// Every credential injected so far.
    pub scrubber: Option<&'a Scrubber>,
    /// Longest string kept whole.
    pub max_value_bytes: usize,
}

impl Masking<'_> {
    /// `value` as the record keeps it, walking `schema` alongside.
    pub fn mask(&self, value: &Value, schema: &Value) -> Value {
        self.walk(value, schema, 0)
    }

    fn walk(&self, value: &Value, schema: &Value, depth: usize) -> Value {
        if is_sensitive(schema) {
            return Value::String(SENSITIVE.into());
        }
        if depth >= MAX_DEPTH && (value.is_object() || value.is_array()) {
            return Value::String("[cut: nested too deep]".into());
        }
        match value {
            Value::String(text) => Value::String(self.string(text)),
            Value::Object(entries) => {
                let mut kept = Map::new();
                for (key, item) in entries.iter().take(MAX_ENTRIES) {
                    let item_schema = schema
                        .get("properties")
                        .and_then(|p| p.get(key))
                        .or_else(|| schema.get("additionalProperties"))
                        .unwrap_or(&Value::Null);
                    kept.insert(self.string(key), self.walk(item, item_schema, depth + 1));
                }
                if entries.len() > MAX_ENTRIES {
                    kept.insert(
                        "[cut]".into(),
                        Value::String(format!("{} more entries", entries.len() - MAX_ENTRIES)),
                    );
                }
                Value::Object(kept)
            }
            Value::Array(items) => {
                let item_schema = schema.get("items").unwrap_or(&Value::Null);
                let mut kept: Vec<Value> = items
                    .iter()
                    .take(MAX_ENTRIES)
                    .map(|item| self.walk(item, item_schema, depth + 1))
                    .collect();
                if items.len() > MAX_ENTRIES {
                    kept.push(Value::String(format!(
                        "[cut: {} more items]",
                        items.len() - MAX_ENTRIES
                    )));
                }
                Value::Array(kept)
            }
            other => other.clone(),
        }
    }

    /// A string masked if it holds a credential, else cut to the cap.
    fn string(&self, text: &str) -> String {
        if self
            .scrubber
            .is_some_and(|s| s.scrub(text.as_bytes()).is_some())
        {
            return SECRET.into();
        }
        if text.len() <= self.max_value_bytes {
            return text.to_owned();
        }
        let mut end = self.max_value_bytes;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…[cut: {} bytes]", &text[..end], text.len())
    }
}

/// Whether a schema node marks its value sensitive.
fn is_sensitive(schema: &Value) -> bool {
    schema.get("writeOnly") == Some(&Value::Bool(true))
        || schema.get("x-sensitive") == Some(&Value::Bool(true))
        || schema.get("format").and_then(Value::as_str) == Some("password")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keeps_structure_masks_marked_values_and_cuts_long_ones() {
        let schema = json!({"properties": {
            "user": {"type": "string"},
            "password": {"type": "string", "format": "password"},
            "nested": {"properties": {"token": {"writeOnly": true}}},
            "list": {"items": {"x-sensitive": true}},
        }});
        let args = json!({
            "user": "ada",
            "password": "hunter2",
            "nested": {"token": {"deep": 1}, "other": "x".repeat(40)},
            "list": ["a", "b"],
        });
        let masking = Masking {
            scrubber: None,
            max_value_bytes: 16,
        };
        let masked = masking.mask(&args, &schema);
        assert_eq!(masked["user"], "ada");
        assert_eq!(masked["password"], SENSITIVE);
        assert_eq!(masked["nested"]["token"], SENSITIVE);
        assert_eq!(
            masked["nested"]["other"],
            format!("{}…[cut: 40 bytes]", "x".repeat(16))
        );
        assert_eq!(masked["list"], json!([SENSITIVE, SENSITIVE]));
    }
}
