//! Hostile: returns a result of any size it is asked for, far beyond
//! `limits.max_output`, and structured results that break the output
//! schema it declares. The host must refuse them, or cut and mark them
//! while still giving the client a valid result.

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
        ]
    }
}

stockade_sdk::export_toolbox!(ResourceOutput);
