//! The host log: standard error only (standard output belongs to the
//! protocol), and every line scrubbed of every credential the process has
//! injected, whichever library wrote it — so a debug line that quotes a
//! request, a response or a tool's arguments cannot carry one.

use std::io::Write;
use std::sync::{Arc, OnceLock};

use stockade_host_api::secrets::Redactor;
use tracing_subscriber::fmt::MakeWriter;

/// The sandbox's redactor, once the sandbox exists.
static REDACTOR: OnceLock<Arc<Redactor>> = OnceLock::new();

/// The format `init` was given.
static FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// Whether stderr lines are JSON objects (`--log-format json`).
pub fn is_json() -> bool {
    FORMAT.get() == Some(&LogFormat::Json)
}

/// Set (to anything) to let rmcp log whole protocol messages, tool
/// arguments and results included. Never in production.
pub const UNSAFE_PAYLOADS_VAR: &str = "STOCKADE_UNSAFE_LOG_PAYLOADS";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per event, fields at the top level.
    Json,
}

/// Starts logging to stderr at the level `STOCKADE_LOG` sets (default
/// `info`). rmcp is held at `warn` whatever that says: its debug and info
/// lines print whole protocol messages (tool arguments and results) and
/// Rust `Debug` structs; [`UNSAFE_PAYLOADS_VAR`] lifts that.
pub fn init(format: LogFormat) {
    let _ = FORMAT.set(format);
    let mut filter = tracing_subscriber::EnvFilter::try_from_env("STOCKADE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if std::env::var_os(UNSAFE_PAYLOADS_VAR).is_none() {
        filter = filter.add_directive("rmcp=warn".parse().expect("a valid directive"));
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(ScrubbedStderr)
        .with_ansi(false);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// From now on every log line is scrubbed with `redactor`.
pub fn scrub_with(redactor: Arc<Redactor>) {
    // A second sandbox in one process would share the first one's values;
    // there is only ever one.
    let _ = REDACTOR.set(redactor);
}

/// Hands tracing one [`ScrubbedLine`] per event.
struct ScrubbedStderr;

impl<'a> MakeWriter<'a> for ScrubbedStderr {
    type Writer = ScrubbedLine;

    fn make_writer(&'a self) -> ScrubbedLine {
        ScrubbedLine(Vec::new())
    }
}

/// One formatted event, written (scrubbed) to stderr when dropped.
struct ScrubbedLine(Vec<u8>);

impl Write for ScrubbedLine {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for ScrubbedLine {
    fn drop(&mut self) {
        let scrubbed = REDACTOR
            .get()
            .and_then(|redactor| redactor.scrubber().scrub(&self.0));
        let line = scrubbed.as_deref().unwrap_or(&self.0);
        // A log line that cannot be written has nowhere else to go.
        let _ = std::io::stderr().lock().write_all(line);
    }
}
