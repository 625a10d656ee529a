//! MCP over standard input and output, with the framing in our hands.
//!
//! rmcp's own stdio transport drops what it cannot parse and ends the
//! session on a first message it does not expect. [`StdioEdge`] reads the
//! lines itself and hands rmcp only messages it can use:
//! - every line is judged by [`framing`]; whatever carries an id and cannot
//!   be served is answered with that id and the fitting JSON-RPC code;
//! - a line longer than `stdio.max_message` is skipped (never buffered
//!   whole) and answered with the id found in its first bytes;
//! - notifications and responses before the first request, stray
//!   responses at any time, a second `initialize` and a request whose id is
//!   already in flight never reach rmcp (the last two are answered);
//! - at most `stdio.max_in_flight` requests run at once: past that, input
//!   is not read until a response goes out, so a client that stops reading
//!   its responses stops being read, and memory stays bounded;
//! - once the session is open (the legacy handshake, or a 2026-era first
//!   call), `tools/call` takes the [`hot`] path, through rmcp's dispatch
//!   but not its service loop;
//! - on shutdown (a signal, or the end of input) nothing more is read;
//!   calls in flight get `server.shutdown_grace` to finish, then are
//!   cancelled.
//!
//! Standard input is read by a thread of its own with blocking reads, and
//! standard output written by another ([`output`]): tokio's own stdin and
//! stdout hand every read and write to its blocking pool and back.

pub(crate) mod framing;
mod hot;
mod output;

use std::collections::HashMap;
use std::io::BufRead;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::RoleServer;
use rmcp::model::{
    ClientJsonRpcMessage, ClientNotification, ClientRequest, JsonRpcMessage, RequestId,
    ServerJsonRpcMessage,
};
use rmcp::transport::Transport;
use serde_json::Value;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, TryAcquireError, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use framing::{INVALID_REQUEST, Verdict, error_response, recover_id};
use hot::HotPath;
pub use hot::SessionPeer;
use output::Output;

use crate::mcp::McpServer;

/// Bytes of responses the reader thread gathers at most before writing.
const ANSWERED_BATCH: usize = 64 << 10;

/// How long cancelled calls get to stop and record how they ended (a
/// running tool stops at its next epoch tick).
const CANCELLED_CALLS_END: Duration = Duration::from_secs(5);

/// Bytes of an over-long line kept to look for its id.
const ID_SEARCH_BYTES: usize = 64 << 10;

/// The bounds of one stdio connection.
#[derive(Debug, Clone, Copy)]
pub struct EdgeLimits {
    /// Longest line, in bytes.
    pub max_message: usize,
    /// Deepest nesting.
    pub max_depth: usize,
    /// Requests in flight at once.
    pub max_in_flight: usize,
    /// Time calls in flight get to finish on shutdown.
    pub shutdown_grace: Duration,
}

/// The stdio transport: standard input judged line by line by a reader
/// thread (so rmcp may drop a pending `receive` at any time without losing
/// input), standard output written one message per line by a writer thread.
pub struct StdioEdge {
    messages: mpsc::Receiver<ClientJsonRpcMessage>,
    output: Output,
}

impl StdioEdge {
    /// The transport over this process's stdin and stdout. `server` serves
    /// the hot path once `peer` is set (when the session opens). `shutdown`
    /// stops it reading; `service` is the token rmcp serves under,
    /// cancelled when the grace period runs out.
    pub fn new(
        limits: EdgeLimits,
        server: McpServer,
        peer: SessionPeer,
        shutdown: CancellationToken,
        service: CancellationToken,
    ) -> std::io::Result<Self> {
        let in_flight = InFlight::new(limits.max_in_flight);
        let output = Output::start(in_flight.clone())?;
        let (sender, messages) = mpsc::channel(1);
        let to_rmcp = ToRmcp(Arc::new(Mutex::new(Some(sender))));
        let runtime = tokio::runtime::Handle::current();
        let hot_calls = HotCalls::default();
        tokio::spawn(wind_down(
            limits.shutdown_grace,
            in_flight.clone(),
            hot_calls.clone(),
            to_rmcp.clone(),
            shutdown.clone(),
            service.clone(),
        ));
        let reader = Reader {
            input: std::io::BufReader::with_capacity(64 << 10, std::io::stdin()),
            output: output.clone(),
            in_flight,
            limits,
            started: false,
            initialized: false,
            shutdown,
            to_rmcp,
            hot: HotPath::new(server, peer, runtime.clone(), hot_calls.tasks.clone()),
            hot_stop: hot_calls.stop.clone(),
            runtime,
            answered: Answered::default(),
        };
        std::thread::Builder::new()
            .name("stockade-stdin".into())
            .spawn(move || reader.run())?;
        Ok(Self { messages, output })
    }
}

/// The hot path's calls, and what stops them at the end of a session.
#[derive(Clone, Default)]
struct HotCalls {
    tasks: TaskTracker,
    stop: CancellationToken,
}

/// The way into rmcp's input; taken away (and so closed) on wind-down.
#[derive(Clone)]
struct ToRmcp(Arc<Mutex<Option<mpsc::Sender<ClientJsonRpcMessage>>>>);

impl ToRmcp {
    /// Hands `message` to rmcp, waiting while it is busy; false once rmcp
    /// stops listening or its input is closed.
    fn send(&self, message: ClientJsonRpcMessage) -> bool {
        let sender = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        sender.is_some_and(|sender| sender.blocking_send(message).is_ok())
    }

    /// Ends rmcp's input (once any send under way is through).
    fn close(&self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

/// Once `shutdown` is cancelled (a signal, or the end of input), waits for
/// the calls in flight (at most the grace period), cancels whatever still
/// runs and lets the hot path's calls record how they ended, then ends
/// rmcp's input.
async fn wind_down(
    grace: Duration,
    in_flight: InFlight,
    hot_calls: HotCalls,
    to_rmcp: ToRmcp,
    shutdown: CancellationToken,
    service: CancellationToken,
) {
    shutdown.cancelled().await;
    let drained = tokio::time::timeout(grace, in_flight.idle()).await;
    if drained.is_err() {
        tracing::warn!(
            in_flight = in_flight.len(),
            "shutdown: calls still running after shutdown_grace are cancelled"
        );
        // The hot path's calls first: rmcp's end ends the process.
        hot_calls.stop.cancel();
        hot_calls.tasks.close();
        if tokio::time::timeout(CANCELLED_CALLS_END, hot_calls.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "shutdown: cancelled calls did not end in time; their records are missing"
            );
        }
        service.cancel();
    }
    to_rmcp.close();
}

/// Reads standard input, judges each line and hands it on.
struct Reader {
    input: std::io::BufReader<std::io::Stdin>,
    output: Output,
    in_flight: InFlight,
    limits: EdgeLimits,
    /// A request has been admitted (the session has started).
    started: bool,
    /// `initialize` has been handed to rmcp.
    initialized: bool,
    /// Cancelled on SIGTERM or SIGINT, or by the reader at the end of
    /// input: stop reading.
    shutdown: CancellationToken,
    /// Cancels the hot path's calls once the grace period is over.
    hot_stop: CancellationToken,
    to_rmcp: ToRmcp,
    hot: HotPath,
    runtime: tokio::runtime::Handle,
    /// Responses of calls that ended on this thread, written together
    /// once no more input is waiting (or before anything that may wait).
    answered: Answered,
}

/// Responses finished on the reader thread, not yet written.
#[derive(Default)]
struct Answered {
    lines: Vec<u8>,
    ids: Vec<RequestId>,
}

impl Reader {
    fn run(mut self) {
        self.read_until_done();
        self.write_answered();
        // Nothing more is read: the wind-down takes over.
        self.shutdown.cancel();
    }

    fn read_until_done(&mut self) {
        loop {
            // Before anything that may block: the client may be waiting
            // for these to send more (a line begun but not ended may be
            // all it has sent).
            if !self.input.buffer().contains(&b'\n') || self.answered.lines.len() >= ANSWERED_BATCH
            {
                self.write_answered();
            }
            let Some(permit) = self.slot() else { return };
            let line = match read_line(&mut self.input, self.limits.max_message) {
                Ok(Some(line)) => line,
                Ok(None) => return,
                Err(err) => {
                    tracing::warn!(target: "stockade::stdio", "cannot read standard input: {err}");
                    return;
                }
            };
            if self.shutdown.is_cancelled() {
                return;
            }
            let verdict = match line {
                Line::Whole(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => continue,
                Line::Whole(bytes) => framing::judge(&bytes, self.limits.max_depth),
                Line::TooLong(prefix) => Verdict::Answer(error_response(
                    recover_id(&prefix),
                    INVALID_REQUEST,
                    format!(
                        "invalid request: the message is longer than stdio.max_message ({} bytes)",
                        self.limits.max_message
                    ),
                )),
            };
            match verdict {
                Verdict::Forward(message) => {
                    if !self.admit(*message, permit) {
                        // rmcp has stopped listening.
                        return;
                    }
                }
                Verdict::Answer(error) => self.output.send_value(&error),
                Verdict::Ignore(why) => {
                    tracing::warn!(target: "stockade::stdio", "ignored input: {why}");
                }
            }
        }
    }

    /// Writes the responses finished here, then gives back their slots.
    fn write_answered(&mut self) {
        if self.answered.lines.is_empty() {
            return;
        }
        self.output.write_now(&self.answered.lines);
        self.answered.lines.clear();
        for id in self.answered.ids.drain(..) {
            self.in_flight.finish(&id);
        }
    }

    /// A free request slot, waiting for one while all are taken; `None`
    /// once shutdown has begun.
    fn slot(&mut self) -> Option<OwnedSemaphorePermit> {
        match self.in_flight.slots.clone().try_acquire_owned() {
            Ok(permit) => return Some(permit),
            Err(TryAcquireError::Closed) => return None,
            Err(TryAcquireError::NoPermits) => {}
        }
        self.write_answered();
        let slots = self.in_flight.slots.clone();
        let shutdown = self.shutdown.clone();
        self.runtime.block_on(async move {
            tokio::select! {
                permit = slots.acquire_owned() => permit.ok(),
                () = shutdown.cancelled() => None,
            }
        })
    }

    /// Takes a judged message: runs it on the hot path, hands it to rmcp,
    /// or answers or drops it. False once rmcp has stopped listening.
    fn admit(&mut self, message: ClientJsonRpcMessage, permit: OwnedSemaphorePermit) -> bool {
        match message {
            JsonRpcMessage::Request(request) => {
                let id = request.id.clone();
                if matches!(request.request, ClientRequest::InitializeRequest(_)) {
                    if self.initialized {
                        self.answer(&id, "invalid request: the session is already initialized");
                        return true;
                    }
                    self.initialized = true;
                }
                let hot = match request.request {
                    ClientRequest::CallToolRequest(call) if self.hot.ready() => call,
                    other => {
                        self.write_answered();
                        if !self.in_flight.hold(id.clone(), permit, None) {
                            self.answer_duplicate(&id);
                            return true;
                        }
                        self.started = true;
                        let message = JsonRpcMessage::request(other, id);
                        return self.to_rmcp.send(message);
                    }
                };
                self.started = true;
                let cancel = self.hot_stop.child_token();
                if !self
                    .in_flight
                    .hold(id.clone(), permit, Some(cancel.clone()))
                {
                    self.answer_duplicate(&id);
                    return true;
                }
                let more_waiting = self.input.buffer().contains(&b'\n');
                if let Some(mut line) =
                    self.hot
                        .run(id.clone(), hot, cancel, &self.output, more_waiting)
                {
                    line.push(b'\n');
                    self.answered.lines.extend_from_slice(&line);
                    self.answered.ids.push(id);
                }
                true
            }
            JsonRpcMessage::Notification(notification) => {
                self.write_answered();
                if !self.started {
                    tracing::warn!(target: "stockade::stdio", "ignored a notification before the first request");
                    return true;
                }
                if let ClientNotification::CancelledNotification(cancelled) =
                    &notification.notification
                    && let Some(id) = &cancelled.params.request_id
                    && self.in_flight.cancel(id) == Cancelled::OnHotPath
                {
                    // rmcp never saw the request.
                    return true;
                }
                self.to_rmcp
                    .send(JsonRpcMessage::Notification(notification))
            }
            // An answer to the server's own request (elicitation); rmcp
            // drops answers to requests it never made.
            message @ (JsonRpcMessage::Response(_) | JsonRpcMessage::Error(_)) if self.started => {
                self.write_answered();
                self.to_rmcp.send(message)
            }
            _ => true,
        }
    }

    fn answer_duplicate(&self, id: &RequestId) {
        self.answer(
            id,
            &format!("invalid request: request id {id} is already in flight"),
        );
    }

    fn answer(&self, id: &RequestId, message: &str) {
        let id = serde_json::to_value(id).unwrap_or(Value::Null);
        self.output
            .send_value(&error_response(id, INVALID_REQUEST, message));
    }
}

impl Transport<RoleServer> for StdioEdge {
    type Error = std::io::Error;

    fn send(
        &mut self,
        item: ServerJsonRpcMessage,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let answered = match &item {
            JsonRpcMessage::Response(response) => Some(response.id.clone()),
            JsonRpcMessage::Error(error) => error.id.clone(),
            _ => None,
        };
        let encoded = serde_json::to_vec(&item).map_err(std::io::Error::other);
        let output = self.output.clone();
        async move {
            // The slot is given back once the response is out, so a client
            // that stops reading holds its slots.
            output.send(encoded?, answered);
            Ok(())
        }
    }

    /// Cancel-safe: rmcp drops a pending receive whenever something else
    /// happens first.
    async fn receive(&mut self) -> Option<ClientJsonRpcMessage> {
        self.messages.recv().await
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.output.flush().await;
        Ok(())
    }
}

/// What cancelling a request found.
#[derive(Debug, PartialEq, Eq)]
enum Cancelled {
    /// A call on the hot path: cancelled here.
    OnHotPath,
    /// A request rmcp runs, or none in flight.
    Elsewhere,
}

/// One request in flight: its slot, and the token that cancels it when it
/// runs on the hot path.
struct Held {
    _permit: OwnedSemaphorePermit,
    hot: Option<CancellationToken>,
}

/// Requests in flight: one semaphore slot each, held until the response
/// has been written (or the client cancelled the request).
#[derive(Clone)]
pub struct InFlight {
    slots: Arc<Semaphore>,
    held: Arc<Mutex<HashMap<RequestId, Held>>>,
    emptied: Arc<Notify>,
}

impl InFlight {
    fn new(max: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max)),
            held: Arc::default(),
            emptied: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RequestId, Held>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Holds `permit` for request `id`, cancelled by `hot` if it runs on
    /// the hot path; false when `id` is already in flight.
    fn hold(
        &self,
        id: RequestId,
        permit: OwnedSemaphorePermit,
        hot: Option<CancellationToken>,
    ) -> bool {
        let mut held = self.lock();
        if held.contains_key(&id) {
            return false;
        }
        held.insert(
            id,
            Held {
                _permit: permit,
                hot,
            },
        );
        true
    }

    /// Request `id` is answered: its slot is free.
    fn finish(&self, id: &RequestId) {
        self.release(id);
    }

    /// The client cancelled request `id`: its slot is free, and a hot-path
    /// call is stopped (rmcp stops its own, and sends nothing for either).
    fn cancel(&self, id: &RequestId) -> Cancelled {
        match self.release(id).and_then(|held| held.hot) {
            Some(token) => {
                token.cancel();
                Cancelled::OnHotPath
            }
            None => Cancelled::Elsewhere,
        }
    }

    fn release(&self, id: &RequestId) -> Option<Held> {
        let mut held = self.lock();
        let released = held.remove(id);
        if released.is_some() && held.is_empty() {
            self.emptied.notify_waiters();
        }
        released
    }

    fn len(&self) -> usize {
        self.lock().len()
    }

    /// Resolves once no request is in flight.
    async fn idle(&self) {
        loop {
            let emptied = self.emptied.notified();
            if self.len() == 0 {
                return;
            }
            emptied.await;
        }
    }
}

/// One line of input.
enum Line {
    /// The whole line, without its newline.
    Whole(Vec<u8>),
    /// A line past the limit: its first bytes (the rest was skipped).
    TooLong(Vec<u8>),
}

/// Reads one line of at most `max` bytes; a longer one is consumed and
/// dropped as it arrives. `None` at the end of input.
fn read_line(input: &mut impl BufRead, max: usize) -> std::io::Result<Option<Line>> {
    let mut line = Vec::new();
    let mut too_long = false;
    loop {
        let buffer = match input.fill_buf() {
            Ok(buffer) => buffer,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        if buffer.is_empty() {
            // The end of input: a last line without a newline still counts.
            return Ok((!line.is_empty() || too_long).then(|| finish(line, too_long)));
        }
        let (chunk, done) = match buffer.iter().position(|b| *b == b'\n') {
            Some(at) => (&buffer[..at], at + 1),
            None => (buffer, buffer.len()),
        };
        let ends = done > chunk.len();
        if !too_long {
            if line.len() + chunk.len() > max {
                too_long = true;
                let keep = ID_SEARCH_BYTES.saturating_sub(line.len()).min(chunk.len());
                line.extend_from_slice(&chunk[..keep]);
                line.truncate(ID_SEARCH_BYTES);
            } else {
                line.extend_from_slice(chunk);
            }
        }
        input.consume(done);
        if ends {
            return Ok(Some(finish(line, too_long)));
        }
    }
}

fn finish(mut line: Vec<u8>, too_long: bool) -> Line {
    if too_long {
        return Line::TooLong(line);
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Line::Whole(line)
}
