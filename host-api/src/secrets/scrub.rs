//! Output scrubbing: a tool's result and error, cleaned of every run of a
//! known credential before anything else (truncation included) sees them.

use super::Scrubber;
use crate::{CallError, ContentItem, ToolFailure, ToolOutput};

impl Scrubber {
    /// A result with every known value scrubbed from its content.
    pub fn scrub_output(&self, output: ToolOutput) -> ToolOutput {
        if self.is_empty() {
            return output;
        }
        ToolOutput {
            content: output
                .content
                .into_iter()
                .map(|item| match item {
                    ContentItem::Text(t) => ContentItem::Text(self.scrub_text(&t)),
                    ContentItem::Json(t) => ContentItem::Json(self.scrub_json(t)),
                    ContentItem::Image { data, mime_type } => ContentItem::Image {
                        data: self.scrub(&data).unwrap_or(data),
                        mime_type: self.scrub_text(&mime_type),
                    },
                    ContentItem::Audio { data, mime_type } => ContentItem::Audio {
                        data: self.scrub(&data).unwrap_or(data),
                        mime_type: self.scrub_text(&mime_type),
                    },
                    ContentItem::Resource {
                        uri,
                        mime_type,
                        body,
                    } => ContentItem::Resource {
                        uri: self.scrub_text(&uri),
                        mime_type: mime_type.map(|m| self.scrub_text(&m)),
                        body: match body {
                            crate::ResourceBody::Text(t) => {
                                crate::ResourceBody::Text(self.scrub_text(&t))
                            }
                            crate::ResourceBody::Blob(b) => {
                                crate::ResourceBody::Blob(self.scrub(&b).unwrap_or(b))
                            }
                        },
                    },
                })
                .collect(),
            structured: output.structured.map(|s| self.scrub_json(s)),
            truncated: output.truncated,
        }
    }

    /// An error with every known value scrubbed from its message.
    pub fn scrub_error(&self, error: CallError) -> CallError {
        if self.is_empty() {
            return error;
        }
        match error {
            CallError::Tool(ToolFailure::InvalidInput(m)) => {
                CallError::Tool(ToolFailure::InvalidInput(self.scrub_text(&m)))
            }
            CallError::Tool(ToolFailure::Denied(m)) => {
                CallError::Tool(ToolFailure::Denied(self.scrub_text(&m)))
            }
            CallError::Tool(ToolFailure::Failed(m)) => {
                CallError::Tool(ToolFailure::Failed(self.scrub_text(&m)))
            }
            CallError::Crashed(m) => CallError::Crashed(self.scrub_text(&m)),
            other => other,
        }
    }

    /// JSON text scrubbed; when replacing a run breaks the JSON (a run cut
    /// through an escape), the whole document becomes a JSON string of the
    /// scrubbed text, so the result stays valid JSON.
    fn scrub_json(&self, json: String) -> String {
        match self.scrub(json.as_bytes()) {
            None => json,
            Some(bytes) => {
                let text = String::from_utf8_lossy(&bytes).into_owned();
                if serde_json::from_str::<serde_json::Value>(&text).is_ok() {
                    text
                } else {
                    serde_json::Value::String(text).to_string()
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::{REDACTED, Redactor, SecretValue};

    const VALUE: &str = "sk-live-0123456789abcdefXYZ";

    fn scrubber() -> std::sync::Arc<Scrubber> {
        let redactor = Redactor::default();
        redactor.remember(&SecretValue::new(VALUE.into()), VALUE);
        redactor.scrubber()
    }

    #[test]
    fn results_and_errors_lose_the_value_and_json_stays_json() {
        let s = scrubber();
        let output = s.scrub_output(ToolOutput {
            content: vec![
                ContentItem::Text(format!("got {VALUE}")),
                ContentItem::Json(format!("{{\"k\":\"{VALUE}\"}}")),
            ],
            structured: Some(r#"{"k":"\u0073k-live-0123456789abcdefXYZ"}"#.to_owned()),
            truncated: false,
        });
        assert_eq!(
            output.content[0],
            ContentItem::Text(format!("got {REDACTED}"))
        );
        let ContentItem::Json(json) = &output.content[1] else {
            panic!("json item")
        };
        assert!(json.contains(REDACTED) && !json.contains("0123456789"));
        let structured = output.structured.unwrap();
        serde_json::from_str::<serde_json::Value>(&structured).unwrap();
        assert!(!structured.contains("0123456789"), "{structured}");
        let err = s.scrub_error(CallError::Crashed(format!("panicked at {VALUE}")));
        assert_eq!(err, CallError::Crashed(format!("panicked at {REDACTED}")));
    }
}
