//! Hostile: looks for what an earlier call left behind. Each call first
//! scans a large zero-initialised static region and freshly grown memory
//! for anything non-zero (in particular its own marker), then writes the
//! marker all over both. A fresh instance must never see it.

use std::cell::UnsafeCell;

use schemars::JsonSchema;
use serde::Deserialize;
use stockade_sdk::{Output, Tool, ToolError, Toolbox};

/// No arguments.
#[derive(Deserialize, JsonSchema)]
struct NoArgs {}

const STATIC_BYTES: usize = 3 << 20;
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
const GROWN_PAGES: usize = 64;
const WASM_PAGE: usize = 64 << 10;

/// A zero-initialised static (it lands in `.bss`, not in a data segment).
struct Region(UnsafeCell<[u8; STATIC_BYTES]>);

// SAFETY: a component instance runs one call on one thread.
unsafe impl Sync for Region {}

static REGION: Region = Region(UnsafeCell::new([0; STATIC_BYTES]));

/// The marker, computed at run time so it never sits in the component's
/// own data segments.
fn marker() -> [u8; 16] {
    std::array::from_fn(|i| std::hint::black_box(0xC3u8 ^ (i as u8).wrapping_mul(29)))
}

/// Counts non-zero bytes and whole markers in `bytes`, then overwrites
/// `bytes` with the marker.
fn scan_and_mark(bytes: &mut [u8], marker: &[u8; 16]) -> (usize, usize) {
    let nonzero = bytes.iter().filter(|&&b| b != 0).count();
    let markers = bytes
        .chunks_exact(marker.len())
        .filter(|c| *c == marker)
        .count();
    for chunk in bytes.chunks_exact_mut(marker.len()) {
        chunk.copy_from_slice(marker);
    }
    (nonzero, markers)
}

/// Fresh pages from `memory.grow`, outside the allocator's reach.
#[cfg(target_arch = "wasm32")]
fn grown_pages() -> Result<&'static mut [u8], ToolError> {
    let first = core::arch::wasm32::memory_grow(0, GROWN_PAGES);
    if first == usize::MAX {
        return Err(ToolError::Failed("memory.grow refused".into()));
    }
    // SAFETY: the pages were just added to linear memory and nothing else
    // (the allocator included) knows of them.
    Ok(unsafe {
        std::slice::from_raw_parts_mut((first * WASM_PAGE) as *mut u8, GROWN_PAGES * WASM_PAGE)
    })
}

#[cfg(not(target_arch = "wasm32"))]
fn grown_pages() -> Result<&'static mut [u8], ToolError> {
    Err(ToolError::Failed(format!(
        "only meaningful on wasm32 ({WASM_PAGE}-byte pages)"
    )))
}

fn probe(_: NoArgs) -> Result<Output, ToolError> {
    let marker = marker();
    // SAFETY: the only reference to REGION for the duration of this call.
    let region = unsafe { &mut *REGION.0.get() };
    let (static_nonzero, static_markers) = scan_and_mark(region, &marker);
    let grown = grown_pages()?;
    let (grown_nonzero, grown_markers) = scan_and_mark(grown, &marker);
    // Positive control: the scanner does find markers that are there.
    let (_, marked_now) = scan_and_mark(grown, &marker);
    Output::json(&serde_json::json!({
        "static_bytes": STATIC_BYTES,
        "static_nonzero": static_nonzero,
        "static_markers": static_markers,
        "grown_bytes": GROWN_PAGES * WASM_PAGE,
        "grown_nonzero": grown_nonzero,
        "grown_markers": grown_markers,
        "marked_now": marked_now,
    }))
}

struct ResourceFreshness;

impl Toolbox for ResourceFreshness {
    fn tools() -> Vec<Tool> {
        vec![Tool::new(
            "probe",
            "Scans static and fresh memory for leftovers, then marks it.",
            probe,
        )]
    }
}

stockade_sdk::export_toolbox!(ResourceFreshness);
