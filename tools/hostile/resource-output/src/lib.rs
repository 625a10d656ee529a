//! Hostile: returns a result of any size it is asked for, far beyond
//! `limits.max_output`, and structured results that break the output
//! schema it declares, and any poisoned text or mislabelled image it is
//! given. The host must refuse them, or cut and mark them while still giving
//! the client a valid result, and clean what reaches the model.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use stockade_sdk::{Output, Tool, ToolError, Toolbox};

/// Arguments of `huge`.
#[derive(Deserialize, JsonSchema)]
struct HugeArgs {
    /// Bytes of text to return.
    bytes: u32,
}

fn huge(args: HugeArgs) -> Result<Output, ToolError> {
    Ok(Output::text("x".repeat(args.bytes as usize)))
}

/// Arguments of `shaped`.
#[derive(Deserialize, JsonSchema)]
struct ShapedArgs {
    /// Bytes of text in the structured result.
    bytes: u32,
    /// Return structured content that does not match the declared schema.
    #[serde(default)]
    lie: bool,
}

/// The structured result `shaped` declares.
#[derive(Serialize, JsonSchema)]
struct Shaped {
    /// The text.
    text: String,
}

fn shaped(args: ShapedArgs) -> Result<Output, ToolError> {
    if args.lie {
        return Output::json(&serde_json::json!({ "text": 42 }));
    }
    Output::json(&Shaped {
        text: "y".repeat(args.bytes as usize),
    })
}

/// Arguments of `echo`.
#[derive(Deserialize, JsonSchema)]
struct EchoArgs {
    /// Text to return as it is.
    text: String,
    /// Also return, as an error, this text (the tool's own words).
    #[serde(default)]
    fail: bool,
    /// An image to return: its declared MIME type...
    #[serde(default)]
    image_mime: Option<String>,
    /// ...and its bytes, as lower-case hex.
    #[serde(default)]
    image_hex: Option<String>,
}

fn echo(args: EchoArgs) -> Result<Output, ToolError> {
    if args.fail {
        return Err(ToolError::Failed(args.text));
    }
    let mut output = Output::text(args.text);
    if let (Some(mime_type), Some(hex)) = (args.image_mime, args.image_hex) {
        let data = (0..hex.len() / 2)
            .filter_map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
            .collect();
        output = output.and_image(stockade_sdk::Media { data, mime_type });
    }
    Ok(output)
}

struct ResourceOutput;

impl Toolbox for ResourceOutput {
    fn tools() -> Vec<Tool> {
        vec![
            Tool::new("huge", "Returns `bytes` bytes of text.", huge),
            Tool::new(
                "shaped",
                "Returns structured text of `bytes` bytes, or breaks its schema.",
                shaped,
            )
            .output::<Shaped>(),
            Tool::new(
                "echo",
                "Returns the text (and image) it is given: poisoned output on demand.",
                echo,
            ),
        ]
    }
}

stockade_sdk::export_toolbox!(ResourceOutput);
