//! Hostile: burns CPU forever, and recurses until a stack runs out, once
//! with small frames (wasm's own call stack) and once with large ones (the
//! shadow stack a Rust guest keeps in its linear memory). Every call must
//! end with a clear limit error and leave the runtime serving.

use std::hint::black_box;

use schemars::JsonSchema;
use serde::Deserialize;
use stockade_sdk::{Output, Tool, ToolError, Toolbox};

/// No arguments.
#[derive(Deserialize, JsonSchema)]
struct NoArgs {}

/// Arguments of `recurse`.
#[derive(Deserialize, JsonSchema)]
struct RecurseArgs {
    /// Bytes of local data each frame keeps on the shadow stack (0 keeps
    /// frames on wasm's own stack only).
    frame_bytes: u32,
}

fn spin(_: NoArgs) -> Result<Output, ToolError> {
    let mut turns: u64 = 0;
    loop {
        turns = black_box(turns.wrapping_add(1));
    }
}

/// Recursion whose frames live on wasm's call stack.
fn small_frames(depth: u64) -> u64 {
    if black_box(depth) == u64::MAX {
        return 0;
    }
    black_box(small_frames(depth + 1)).wrapping_add(1)
}

/// Recursion that keeps a 4 KiB array per frame, which a Rust guest
/// places on its shadow stack in linear memory.
fn large_frames(depth: u64) -> u64 {
    let mut frame = [0u8; 4096];
    frame[(depth % 4096) as usize] = depth as u8;
    black_box(&mut frame);
    if black_box(depth) == u64::MAX {
        return 0;
    }
    large_frames(depth + 1).wrapping_add(u64::from(frame[(depth % 4096) as usize]))
}

fn recurse(args: RecurseArgs) -> Result<Output, ToolError> {
    let total = if args.frame_bytes == 0 {
        small_frames(0)
    } else {
        large_frames(0)
    };
    Ok(Output::text(format!("returned {total}")))
}

fn ok(_: NoArgs) -> Result<Output, ToolError> {
    Ok(Output::text("ok"))
}

struct ResourceCpu;

impl Toolbox for ResourceCpu {
    fn tools() -> Vec<Tool> {
        vec![
            Tool::new("spin", "Loops forever.", spin),
            Tool::new("recurse", "Recurses without end.", recurse),
            Tool::new("ok", "Returns at once.", ok),
        ]
    }
}

stockade_sdk::export_toolbox!(ResourceCpu);
