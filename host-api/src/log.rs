//! Where a tool's words go: the `host.log` import and captured stdio, both
//! written to the host's log (never the protocol stream), tagged with the
//! tool and bounded per call.

use std::sync::Arc;

use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

use crate::secrets::Redactor;

/// Bytes of `host.log` text one call may write before further lines are dropped.
const LOG_BUDGET_BYTES: usize = 64 << 10;

/// Per-call log state: the tool's label and what is left of its budget.
pub struct GuestLog {
    label: String,
    remaining: usize,
    dropped: usize,
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
    /// A log for one call of the tool named `label`; every line is scrubbed
    /// of the secrets `redactor` knows.
    pub fn new(label: &str, redactor: Arc<Redactor>) -> Self {
        Self {
            label: label.to_owned(),
            remaining: LOG_BUDGET_BYTES,
            dropped: 0,
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

    /// Writes one guest line, unless the call's budget is spent.
    pub fn write(&mut self, level: GuestLevel, message: &str) {
        if message.len() > self.remaining {
            self.remaining = 0;
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

    /// Logs what a call left in its stdout and stderr pipes, and any lines
    /// dropped over budget.
    pub fn flush_stdio(&self, stdout: &MemoryOutputPipe, stderr: &MemoryOutputPipe) {
        let tool = self.label.as_str();
        for (stream, pipe) in [("stdout", stdout), ("stderr", stderr)] {
            let bytes = pipe.contents();
            if !bytes.is_empty() {
                let text = self.scrub(&String::from_utf8_lossy(&bytes));
                let text = text.escape_debug().to_string();
                tracing::info!(target: "stockade::guest", tool, stream, "{text}");
            }
        }
        if self.dropped > 0 {
            tracing::warn!(target: "stockade::guest", tool, dropped = self.dropped, "log budget exhausted");
        }
    }
}
