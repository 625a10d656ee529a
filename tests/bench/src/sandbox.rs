//! The sandbox alone, in this process: one `transform` call through
//! `stockade-host-api` (fresh store and instance, limits, drop) against the
//! same function compiled natively.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Result, bail};
use stockade_host_api::ContentItem;
use text_kit::Operation;

use crate::demo_sandbox::DemoSandbox;
use crate::stats::Samples;
use crate::{TRANSFORM_INPUT, TRANSFORM_OUTPUT};

/// A sandbox with text-kit loaded under the demo's limits.
pub struct SandboxBench {
    demo: DemoSandbox,
    arguments: String,
}

impl SandboxBench {
    /// Builds a sandbox whose compiled-component cache is `cache_dir` and
    /// loads the component at `wasm`.
    pub fn new(cache_dir: &Path, wasm: &Path, digest: &str) -> Result<Self> {
        let arguments = serde_json::json!({ "text": TRANSFORM_INPUT, "op": "upper" }).to_string();
        Ok(Self {
            demo: DemoSandbox::new(cache_dir, wasm, Some(digest), "bench")?,
            arguments,
        })
    }

    /// One call: instantiate, run `transform`, drop the store; the result
    /// is checked so a broken call cannot pass for a fast one.
    async fn call(&self) -> Result<()> {
        let report = self.demo.transform(&self.arguments).await;
        let output = report
            .result
            .map_err(|err| anyhow::anyhow!("sandbox call failed: {err}"))?;
        match output.content.as_slice() {
            [ContentItem::Text(text)] if text == TRANSFORM_OUTPUT => Ok(()),
            other => bail!("unexpected sandbox output: {other:?}"),
        }
    }

    /// Times `calls` sequential calls after `warmup` untimed ones. With
    /// `cold_caches`, each call follows a sweep through a buffer larger than
    /// the CPU caches, as a call in a server follows other work.
    pub async fn latency(&self, warmup: usize, calls: usize, cold_caches: bool) -> Result<Samples> {
        for _ in 0..warmup {
            self.call().await?;
        }
        let mut evictor = cold_caches.then(CacheEvictor::new);
        let mut timings = Vec::with_capacity(calls);
        for _ in 0..calls {
            if let Some(evictor) = &mut evictor {
                evictor.sweep();
            }
            let started = Instant::now();
            self.call().await?;
            timings.push(started.elapsed());
        }
        Ok(Samples::new(timings))
    }

    /// Calls per second with `tasks` tokio tasks each making
    /// `calls_per_task` calls back to back.
    pub async fn throughput(self: &Arc<Self>, tasks: usize, calls_per_task: usize) -> Result<f64> {
        let started = Instant::now();
        let mut running = Vec::with_capacity(tasks);
        for _ in 0..tasks {
            let bench = Arc::clone(self);
            running.push(tokio::spawn(async move {
                for _ in 0..calls_per_task {
                    bench.call().await?;
                }
                anyhow::Ok(())
            }));
        }
        for task in running {
            task.await??;
        }
        Ok((tasks * calls_per_task) as f64 / started.elapsed().as_secs_f64())
    }
}

/// A buffer written from end to end to push everything else out of the
/// CPU caches.
struct CacheEvictor {
    buffer: Vec<u8>,
    round: u8,
}

impl CacheEvictor {
    /// Larger than the last-level cache share of a small VM.
    const BYTES: usize = 16 << 20;
    /// One write per cache line is enough to evict it.
    const LINE: usize = 64;

    fn new() -> Self {
        Self {
            buffer: vec![0; Self::BYTES],
            round: 0,
        }
    }

    fn sweep(&mut self) {
        self.round = self.round.wrapping_add(1);
        for byte in self.buffer.iter_mut().step_by(Self::LINE) {
            *byte = self.round;
        }
        black_box(&self.buffer);
    }
}

/// One native call of the same function on the same input.
fn native_call() {
    let out = text_kit::transform(black_box(TRANSFORM_INPUT), black_box(Operation::Upper));
    assert_eq!(out, TRANSFORM_OUTPUT);
    black_box(out);
}

/// Times `calls` native calls after `warmup` untimed ones, caches cold
/// before each call when `cold_caches` is set.
pub fn native_latency(warmup: usize, calls: usize, cold_caches: bool) -> Samples {
    for _ in 0..warmup {
        native_call();
    }
    let mut evictor = cold_caches.then(CacheEvictor::new);
    let mut timings = Vec::with_capacity(calls);
    for _ in 0..calls {
        if let Some(evictor) = &mut evictor {
            evictor.sweep();
        }
        let started = Instant::now();
        native_call();
        timings.push(started.elapsed());
    }
    Samples::new(timings)
}

/// Native calls per second with `threads` threads each making
/// `calls_per_thread` calls.
pub fn native_throughput(threads: usize, calls_per_thread: usize) -> f64 {
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                for _ in 0..calls_per_thread {
                    native_call();
                }
            });
        }
    });
    (threads * calls_per_thread) as f64 / started.elapsed().as_secs_f64()
}
