//! Hostile: grows its memory until the host refuses, through the allocator
//! (which aborts when refused), through fallible allocation (which sees the
//! refusal and fails in its own words) and through raw `memory.grow`
//! (which sees the refusal and reports how far it got). Neither may pass
//! `limits.memory`, and the runtime must give the memory back.

use std::hint::black_box;

use schemars::JsonSchema;
use serde::Deserialize;
use stockade_sdk::{Output, Tool, ToolError, Toolbox};

/// No arguments.
#[derive(Deserialize, JsonSchema)]
struct NoArgs {}

const WASM_PAGE: usize = 64 << 10;

fn bomb(_: NoArgs) -> Result<Output, ToolError> {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        // Written, not just reserved, so every page is really touched.
        let chunk = vec![0xA5u8; 1 << 20];
        hoard.push(black_box(chunk));
    }
}

fn hoard(_: NoArgs) -> Result<Output, ToolError> {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut chunk = Vec::new();
        if chunk.try_reserve_exact(1 << 20).is_err() {
            return Err(ToolError::Failed(format!(
                "allocation refused after {} MiB",
                hoard.len()
            )));
        }
        chunk.resize(1 << 20, 0xA5u8);
        hoard.push(black_box(chunk));
    }
}

#[cfg(target_arch = "wasm32")]
fn grow(_: NoArgs) -> Result<Output, ToolError> {
    use core::arch::wasm32::{memory_grow, memory_size};
    let mut granted = 0usize;
    while memory_grow(0, 1) != usize::MAX {
        granted += 1;
    }
    let total = memory_size(0) * WASM_PAGE;
    Output::json(&serde_json::json!({
        "granted_pages": granted,
        "memory_bytes": total,
    }))
}

#[cfg(not(target_arch = "wasm32"))]
fn grow(_: NoArgs) -> Result<Output, ToolError> {
    Err(ToolError::Failed(format!(
        "only meaningful on wasm32 ({WASM_PAGE}-byte pages)"
    )))
}

fn ok(_: NoArgs) -> Result<Output, ToolError> {
    Ok(Output::text("ok"))
}

struct ResourceMemory;

impl Toolbox for ResourceMemory {
    fn tools() -> Vec<Tool> {
        vec![
            Tool::new("bomb", "Allocates 1 MiB blocks until refused.", bomb),
            Tool::new("grow", "Grows memory a page at a time until refused.", grow),
            Tool::new(
                "hoard",
                "Allocates 1 MiB blocks fallibly; fails in its own words when refused.",
                hoard,
            ),
            Tool::new("ok", "Returns at once.", ok),
        ]
    }
}

stockade_sdk::export_toolbox!(ResourceMemory);
