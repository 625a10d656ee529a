//! Where a tool's words go: the `host.log` import and captured stdio, both
//! written to the host's log (never the protocol stream), tagged with the
//! tool, bounded per call and rate-limited per tool over time.

use std::num::NonZeroU32;
use std::sync::Arc;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

use crate::secrets::Redactor;

/// Bytes of `host.log` text one call may write before further lines are dropped.
const LOG_BUDGET_BYTES: usize = 64 << 10;

/// Guest log lines one component may write per second, over time.
const LINES_PER_SECOND: u32 = 50;
/// Lines a component may write in a burst before the rate applies.
const LINE_BURST: u32 = 500;

/// One component's guest log rate, shared by all its calls.
#[derive(Clone)]
pub struct LogRate(Arc<DefaultDirectRateLimiter>);

impl Default for LogRate {
    fn default() -> Self {
        let quota = Quota::per_second(NonZeroU32::new(LINES_PER_SECOND).expect("non-zero"))
            .allow_burst(NonZeroU32::new(LINE_BURST).expect("non-zero"));
        Self(Arc::new(RateLimiter::direct(quota)))
    }
}

impl std::fmt::Debug for LogRate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogRate")
    }
}

/// Per-call log state: the tool's label, what is left of its budget and
/// its component's rate.
pub struct GuestLog {
    label: String,
    remaining: usize,
    dropped: usize,
    rate: LogRate,
    redactor: Arc<Redactor>,
}

/// Severity of a guest log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestLevel {
    /// Very fine detail.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation.
    Info,
    /// Something odd.
    Warn,
    /// A failure.
    Error,
}

impl GuestLog {
    /// A log for one call of the tool named `label`, drawing on its
    /// component's `rate`; every line is scrubbed of the secrets
    /// `redactor` knows.
    pub fn new(label: &str, rate: LogRate, redactor: Arc<Redactor>) -> Self {
        Self {
            label: label.to_owned(),
            remaining: LOG_BUDGET_BYTES,
            dropped: 0,
            rate,
            redactor,
        }
    }

    /// `text` without any run of a secret injected so far.
    fn scrub(&self, text: &str) -> String {
        self.redactor.scrubber().scrub_text(text)
    }

    /// The tool this log belongs to.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Writes one guest line, unless the call's budget or the component's
    /// rate is spent.
    pub fn write(&mut self, level: GuestLevel, message: &str) {
        if message.len() > self.remaining || self.rate.0.check().is_err() {
            self.remaining = self.remaining.saturating_sub(message.len());
            self.dropped += 1;
            return;
        }
        self.remaining -= message.len();
        let tool = self.label.as_str();
        let message = self.scrub(message).escape_debug().to_string();
        match level {
            GuestLevel::Trace => tracing::trace!(target: "stockade::guest", tool, "{message}"),
            GuestLevel::Debug => tracing::debug!(target: "stockade::guest", tool, "{message}"),
            GuestLevel::Info => tracing::info!(target: "stockade::guest", tool, "{message}"),
            GuestLevel::Warn => tracing::warn!(target: "stockade::guest", tool, "{message}"),
            GuestLevel::Error => tracing::error!(target: "stockade::guest", tool, "{message}"),
        }
    }

    /// Logs what a call left in its stdout and stderr pipes (each one line,
    /// within the component's rate), and any lines dropped.
    pub fn flush_stdio(&mut self, stdout: &MemoryOutputPipe, stderr: &MemoryOutputPipe) {
        for (stream, pipe) in [("stdout", stdout), ("stderr", stderr)] {
            let bytes = pipe.contents();
            if bytes.is_empty() {
                continue;
            }
            if self.rate.0.check().is_err() {
                self.dropped += 1;
                continue;
            }
            let text = self.scrub(&String::from_utf8_lossy(&bytes));
            let text = text.escape_debug().to_string();
            let tool = self.label.as_str();
            tracing::info!(target: "stockade::guest", tool, stream, "{text}");
        }
        let tool = self.label.as_str();
        if self.dropped > 0 {
            tracing::warn!(target: "stockade::guest", tool, dropped = self.dropped, "guest log lines dropped: over the call's budget or the tool's rate");
        }
    }
}
