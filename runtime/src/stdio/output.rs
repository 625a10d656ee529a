//! Standard output, written by a thread of its own.
//!
//! Every response (rmcp's, the hot path's calls that had to wait, and the
//! edge's own answers) is queued as one finished line; the thread writes
//! whatever has queued up in one blocking write, so a busy session pays one system call for many
//! responses, and no async task ever waits on a pipe the client is slow to
//! read. A request's slot is given back only once its response is out, so
//! a client that stops reading stops being read (see [`super::InFlight`]).

use std::io::Write;
use std::sync::mpsc;

use rmcp::model::RequestId;
use serde_json::Value;

use super::InFlight;

/// Bytes gathered into one write at most (a single longer line still goes
/// out whole).
const MAX_BATCH: usize = 256 << 10;

/// What the writer thread is given.
enum Outgoing {
    /// One message, its newline included; `answers` is the request it
    /// answers, whose slot is given back once it is written.
    Line {
        bytes: Vec<u8>,
        answers: Option<RequestId>,
    },
    /// Tells the sender once everything queued before it is written.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// The queue to the writer thread; cheap to clone.
#[derive(Clone)]
pub struct Output {
    queue: mpsc::Sender<Outgoing>,
}

impl Output {
    /// Starts the writer thread over this process's standard output.
    pub fn start(in_flight: InFlight) -> std::io::Result<Self> {
        let (queue, lines) = mpsc::channel();
        std::thread::Builder::new()
            .name("stockade-stdout".into())
            .spawn(move || write_all_queued(&lines, &in_flight))?;
        Ok(Self { queue })
    }

    /// Queues one message (`bytes` without its newline) answering
    /// `answers`, if it answers a request.
    pub fn send(&self, mut bytes: Vec<u8>, answers: Option<RequestId>) {
        bytes.push(b'\n');
        // The writer outlives every sender but the last; should it be gone,
        // so is the client.
        let _ = self.queue.send(Outgoing::Line { bytes, answers });
    }

    /// Queues one of the edge's own messages.
    pub fn send_value(&self, value: &Value) {
        self.send(value.to_string().into_bytes(), None);
    }

    /// Writes finished lines now, on the calling thread (which blocks while
    /// the client is not reading: the reader thread uses this, and so
    /// stops reading too). Only the writer thread and this write.
    pub fn write_now(&self, lines: &[u8]) {
        if let Err(err) = write_out(lines) {
            tracing::debug!(target: "stockade::stdio", "cannot write to standard output: {err}");
        }
    }

    /// Resolves once everything queued so far has been written (or the
    /// writer has stopped).
    pub async fn flush(&self) {
        let (done, written) = tokio::sync::oneshot::channel();
        if self.queue.send(Outgoing::Flush(done)).is_ok() {
            let _ = written.await;
        }
    }
}

/// The writer thread: blocks for the next message, takes whatever else has
/// queued, writes it all, then gives back the slots of the requests it
/// answered. After a failed write (the client has gone) it keeps taking
/// messages and giving back slots, writing nothing.
fn write_all_queued(lines: &mpsc::Receiver<Outgoing>, in_flight: &InFlight) {
    let mut batch = Vec::with_capacity(64 << 10);
    let mut answered = Vec::new();
    let mut flushed = Vec::new();
    let mut broken = false;
    while let Ok(first) = lines.recv() {
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Outgoing::Line { bytes, answers } => {
                    batch.extend_from_slice(&bytes);
                    answered.extend(answers);
                }
                Outgoing::Flush(done) => flushed.push(done),
            }
            if batch.len() < MAX_BATCH {
                next = lines.try_recv().ok();
            }
        }
        if !broken
            && !batch.is_empty()
            && let Err(err) = write_out(&batch)
        {
            tracing::debug!(target: "stockade::stdio", "cannot write to standard output: {err}");
            broken = true;
        }
        batch.clear();
        for id in answered.drain(..) {
            in_flight.finish(&id);
        }
        for done in flushed.drain(..) {
            let _ = done.send(());
        }
    }
}

/// One write of whole lines to standard output, under its lock.
fn write_out(lines: &[u8]) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(lines)?;
    stdout.flush()
}
