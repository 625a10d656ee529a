//! Hostile: returns a result of any size it is asked for, far beyond
//! `limits.max_output`. The host must refuse it or cut and mark it.

use schemars::JsonSchema;
use serde::Deserialize;
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

struct ResourceOutput;

impl Toolbox for ResourceOutput {
    fn tools() -> Vec<Tool> {
        vec![Tool::new("huge", "Returns `bytes` bytes of text.", huge)]
    }
}

stockade_sdk::export_toolbox!(ResourceOutput);
