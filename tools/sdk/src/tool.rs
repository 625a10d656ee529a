//! Declaring tools: names, schemas, typed handlers and results.

use serde::de::DeserializeOwned;

use crate::bindings::stockade::tool::{host, types};

/// A set of tools one component exports.
pub trait Toolbox {
    /// Every tool, in the order clients should see them.
    fn tools() -> Vec<Tool>;
}

type Handler = Box<dyn Fn(&str) -> Result<Output, ToolError>>;

/// One tool: its descriptor and its handler.
pub struct Tool {
    name: String,
    title: Option<String>,
    description: String,
    /// Schemas are generated only when the tool list is read, not on
    /// every call (a call builds the whole toolbox to find its handler).
    input_schema: fn() -> serde_json::Value,
    output_schema: Option<fn() -> serde_json::Value>,
    hints: types::Hints,
    handler: Handler,
}

impl Tool {
    /// A tool whose arguments deserialize into `A`; the input schema is
    /// derived from `A`.
    pub fn new<A, F>(name: &str, description: &str, handler: F) -> Self
    where
        A: DeserializeOwned + schemars::JsonSchema,
        F: Fn(A) -> Result<Output, ToolError> + 'static,
    {
        Self {
            name: name.to_owned(),
            title: None,
            description: description.to_owned(),
            input_schema: schema_of::<A>,
            output_schema: None,
            hints: types::Hints {
                read_only: false,
                destructive: false,
                idempotent: false,
                open_world: false,
            },
            handler: Box::new(move |json| {
                let args: A = serde_json::from_str(json)
                    .map_err(|e| ToolError::InvalidInput(e.to_string()))?;
                handler(args)
            }),
        }
    }

    /// Sets a human-readable title.
    pub fn title(mut self, title: &str) -> Self {
        self.title = Some(title.to_owned());
        self
    }

    /// Declares the schema of the structured result, derived from `O`.
    pub fn output<O: schemars::JsonSchema>(mut self) -> Self {
        self.output_schema = Some(schema_of::<O>);
        self
    }

    /// Marks the tool as not modifying anything.
    pub fn read_only(mut self) -> Self {
        self.hints.read_only = true;
        self
    }

    /// Marks the tool as possibly destroying data.
    pub fn destructive(mut self) -> Self {
        self.hints.destructive = true;
        self
    }

    /// Marks repeated calls with the same arguments as harmless.
    pub fn idempotent(mut self) -> Self {
        self.hints.idempotent = true;
        self
    }

    /// Marks the tool as reaching outside systems.
    pub fn open_world(mut self) -> Self {
        self.hints.open_world = true;
        self
    }
}

/// Bytes of an image or a sound in a result, and their type.
pub struct Media {
    /// Raw bytes.
    pub data: Vec<u8>,
    /// e.g. `image/png`, `audio/wav`.
    pub mime_type: String,
}

/// What a tool returns on success.
#[derive(Default)]
pub struct Output {
    content: Vec<types::Content>,
    structured: Option<String>,
}

impl Output {
    /// A result of one text item.
    pub fn text(text: impl Into<String>) -> Self {
        Self::default().and_text(text)
    }

    /// A structured result: sent as structured content and as JSON text.
    pub fn json<T: serde::Serialize>(value: &T) -> Result<Self, ToolError> {
        let text = serde_json::to_string(value).map_err(|e| ToolError::Failed(e.to_string()))?;
        Ok(Self {
            content: vec![types::Content::Json(text.clone())],
            structured: Some(text),
        })
    }

    /// Adds a text item.
    pub fn and_text(mut self, text: impl Into<String>) -> Self {
        self.content.push(types::Content::Text(text.into()));
        self
    }

    /// Adds an image item (the host checks the bytes are the type named).
    pub fn and_image(mut self, image: Media) -> Self {
        self.content.push(types::Content::Image(types::Media {
            data: image.data,
            mime_type: image.mime_type,
        }));
        self
    }

    /// Adds an audio item (the host checks the bytes are the type named).
    pub fn and_audio(mut self, audio: Media) -> Self {
        self.content.push(types::Content::Audio(types::Media {
            data: audio.data,
            mime_type: audio.mime_type,
        }));
        self
    }

    /// Adds an embedded text resource.
    pub fn and_text_resource(
        mut self,
        uri: impl Into<String>,
        mime_type: Option<String>,
        text: impl Into<String>,
    ) -> Self {
        self.content
            .push(types::Content::Embedded(types::EmbeddedResource {
                uri: uri.into(),
                mime_type,
                body: types::ResourceBody::Text(text.into()),
            }));
        self
    }

    /// Adds an embedded binary resource.
    pub fn and_blob_resource(
        mut self,
        uri: impl Into<String>,
        mime_type: Option<String>,
        bytes: Vec<u8>,
    ) -> Self {
        self.content
            .push(types::Content::Embedded(types::EmbeddedResource {
                uri: uri.into(),
                mime_type,
                body: types::ResourceBody::Blob(bytes),
            }));
        self
    }
}

/// Why a tool call failed.
#[derive(Debug)]
pub enum ToolError {
    /// The arguments were unusable; say which field and why.
    InvalidInput(String),
    /// The tool refuses, or the host refused it something.
    Denied(String),
    /// Anything else.
    Failed(String),
}

impl From<crate::http::HttpError> for ToolError {
    fn from(err: crate::http::HttpError) -> Self {
        match err {
            crate::http::HttpError::Denied => ToolError::Denied(err.to_string()),
            other => ToolError::Failed(other.to_string()),
        }
    }
}

/// The verified caller of the current call.
pub fn caller() -> host::CallerIdentity {
    host::caller()
}

/// Writes a line to the host's log.
pub fn log(level: host::Level, message: &str) {
    host::log(level, message);
}

/// The JSON Schema of `T`, in the forms every mainstream MCP client
/// accepts without warnings (see [`portable`]).
fn schema_of<T: schemars::JsonSchema>() -> serde_json::Value {
    let mut schema = serde_json::to_value(schemars::schema_for!(T))
        .unwrap_or_else(|_| serde_json::json!({ "type": "object" }));
    portable(&mut schema);
    schema
}

/// `format` values JSON Schema itself defines, plus OpenAPI's `password`
/// (which marks a value sensitive: Stockade's audit masks it); schemars
/// adds others (`uint32`, `double`, ...) that validators warn about.
const STANDARD_FORMATS: &[&str] = &[
    "date-time",
    "date",
    "time",
    "duration",
    "email",
    "idn-email",
    "hostname",
    "idn-hostname",
    "ipv4",
    "ipv6",
    "uri",
    "uri-reference",
    "iri",
    "iri-reference",
    "uuid",
    "uri-template",
    "json-pointer",
    "relative-json-pointer",
    "regex",
    "password",
];

/// Rewrites a schema in place: drops non-standard `format`s (the bounds
/// schemars also writes, such as `minimum: 0`, stay) and turns a `type`
/// array (`["string", "null"]`) into the equivalent `anyOf`.
fn portable(schema: &mut serde_json::Value) {
    use serde_json::Value;
    match schema {
        Value::Object(map) => {
            if map
                .get("format")
                .and_then(Value::as_str)
                .is_some_and(|f| !STANDARD_FORMATS.contains(&f))
            {
                map.remove("format");
            }
            if let Some(Value::Array(types)) = map.get("type").cloned()
                && !map.contains_key("anyOf")
            {
                map.remove("type");
                let alternatives = types
                    .into_iter()
                    .map(|t| serde_json::json!({ "type": t }))
                    .collect();
                map.insert("anyOf".into(), Value::Array(alternatives));
            }
            for (key, value) in map.iter_mut() {
                // Instance values, not schemas: left as written.
                if !matches!(key.as_str(), "default" | "examples" | "const" | "enum") {
                    portable(value);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(portable),
        _ => {}
    }
}

#[doc(hidden)]
pub fn __list<T: Toolbox>() -> Vec<types::Descriptor> {
    T::tools()
        .into_iter()
        .map(|tool| types::Descriptor {
            name: tool.name,
            title: tool.title,
            description: tool.description,
            input_schema: (tool.input_schema)().to_string(),
            output_schema: tool.output_schema.map(|schema| schema().to_string()),
            hints: tool.hints,
        })
        .collect()
}

#[doc(hidden)]
pub fn __call<T: Toolbox>(name: &str, arguments: &str) -> Result<types::Output, types::ToolError> {
    let tools = T::tools();
    let tool = tools
        .iter()
        .find(|t| t.name == name)
        .ok_or_else(|| types::ToolError::InvalidInput(format!("unknown tool `{name}`")))?;
    match (tool.handler)(arguments) {
        Ok(out) => Ok(types::Output {
            content: out.content,
            structured: out.structured,
        }),
        Err(ToolError::InvalidInput(m)) => Err(types::ToolError::InvalidInput(m)),
        Err(ToolError::Denied(m)) => Err(types::ToolError::Denied(m)),
        Err(ToolError::Failed(m)) => Err(types::ToolError::Failed(m)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(schemars::JsonSchema)]
    #[allow(dead_code)]
    struct Sample {
        count: u32,
        ratio: f64,
        label: Option<String>,
        /// A default that mentions a format, which must stay.
        #[schemars(default = "sample_default")]
        nested: Inner,
    }

    #[derive(schemars::JsonSchema, serde::Serialize, Default)]
    struct Inner {
        format: String,
    }

    fn sample_default() -> Inner {
        Inner {
            format: "uint8".into(),
        }
    }

    #[test]
    fn schemas_carry_no_nonstandard_format_and_no_type_array() {
        let schema = schema_of::<Sample>().to_string();
        assert!(
            !schema.contains("uint32") && !schema.contains("double"),
            "{schema}"
        );
        assert!(!schema.contains(r#""type":["#), "{schema}");
        assert!(schema.contains(r#""minimum":0"#), "{schema}");
        assert!(schema.contains(r#"{"type":"null"}"#), "{schema}");
        assert!(
            schema.contains(r#""format":"uint8""#),
            "the default is an instance: {schema}"
        );
    }
}
