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
//! - on shutdown (a signal, or the end of input) nothing more is read;
//!   calls in flight get `server.shutdown_grace` to finish, then are
//!   cancelled.

mod framing;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::RoleServer;
use rmcp::model::{
    ClientJsonRpcMessage, ClientNotification, ClientRequest, JsonRpcMessage, RequestId,
    ServerJsonRpcMessage,
};
use rmcp::transport::Transport;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use framing::{INVALID_REQUEST, Verdict, error_response, recover_id};

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

/// The stdio transport: standard input judged line by line (by a reader
/// task, so that rmcp may drop a pending `receive` at any time without
/// losing input), standard output written one message per line.
pub struct StdioEdge {
    messages: mpsc::Receiver<ClientJsonRpcMessage>,
    output: Output,
    in_flight: InFlight,
}

impl StdioEdge {
    /// The transport over this process's stdin and stdout, reading in a
    /// task of its own. `shutdown` stops it reading; `service` is the token
    /// rmcp serves under, cancelled when the grace period runs out.
    pub fn new(
        limits: EdgeLimits,
        shutdown: CancellationToken,
        service: CancellationToken,
    ) -> Self {
        let output = Output(Arc::new(tokio::sync::Mutex::new(tokio::io::stdout())));
        let in_flight = InFlight::new(limits.max_in_flight);
        let (sender, messages) = mpsc::channel(1);
        let reader = Reader {
            input: BufReader::with_capacity(64 << 10, tokio::io::stdin()),
            output: output.clone(),
            in_flight: in_flight.clone(),
            limits,
            started: false,
            initialized: false,
            shutdown,
            service,
            messages: sender,
        };
        tokio::spawn(reader.run());
        Self {
            messages,
            output,
            in_flight,
        }
    }
}

/// Reads standard input and hands judged messages to the transport.
struct Reader {
    input: BufReader<tokio::io::Stdin>,
    output: Output,
    in_flight: InFlight,
    limits: EdgeLimits,
    /// A request has been handed to rmcp (the session has started).
    started: bool,
    /// `initialize` has been handed to rmcp.
    initialized: bool,
    /// Cancelled on SIGTERM or SIGINT: stop reading.
    shutdown: CancellationToken,
    /// rmcp's service token.
    service: CancellationToken,
    messages: mpsc::Sender<ClientJsonRpcMessage>,
}

impl Reader {
    async fn run(mut self) {
        loop {
            let permit = tokio::select! {
                permit = self.in_flight.slots.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
                () = self.shutdown.cancelled() => break,
            };
            let line = tokio::select! {
                line = read_line(&mut self.input, self.limits.max_message) => line,
                () = self.shutdown.cancelled() => break,
            };
            let line = match line {
                Ok(Some(line)) => line,
                Ok(None) => break,
                Err(err) => {
                    tracing::warn!(target: "stockade::stdio", "cannot read standard input: {err}");
                    break;
                }
            };
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
                    if let Some(message) = self.admit(*message, permit).await
                        && self.messages.send(message).await.is_err()
                    {
                        // rmcp has stopped listening.
                        return;
                    }
                }
                Verdict::Answer(error) => self.output.write_value(&error).await,
                Verdict::Ignore(why) => {
                    tracing::warn!(target: "stockade::stdio", "ignored input: {why}");
                }
            }
        }
        self.wind_down().await;
    }

    /// Nothing more is read: waits for the calls in flight (at most the
    /// grace period), cancels whatever still runs, then ends the input.
    async fn wind_down(self) {
        let drained = tokio::time::timeout(self.limits.shutdown_grace, self.in_flight.idle()).await;
        if drained.is_err() {
            tracing::warn!(
                in_flight = self.in_flight.len(),
                "shutdown: calls still running after shutdown_grace are cancelled"
            );
            self.service.cancel();
        }
        // Dropping the sender ends rmcp's input.
    }

    /// Takes a judged message: hands it on, or answers or drops it.
    async fn admit(
        &mut self,
        message: ClientJsonRpcMessage,
        permit: OwnedSemaphorePermit,
    ) -> Option<ClientJsonRpcMessage> {
        match &message {
            JsonRpcMessage::Request(request) => {
                let id = request.id.clone();
                if matches!(request.request, ClientRequest::InitializeRequest(_)) {
                    if self.initialized {
                        let why = "invalid request: the session is already initialized";
                        self.answer(&id, why).await;
                        return None;
                    }
                    self.initialized = true;
                }
                if !self.in_flight.hold(id.clone(), permit) {
                    let why = format!("invalid request: request id {id} is already in flight");
                    self.answer(&id, &why).await;
                    return None;
                }
                self.started = true;
                Some(message)
            }
            JsonRpcMessage::Notification(notification) => {
                if !self.started {
                    tracing::warn!(target: "stockade::stdio", "ignored a notification before the first request");
                    return None;
                }
                if let ClientNotification::CancelledNotification(cancelled) =
                    &notification.notification
                    && let Some(id) = &cancelled.params.request_id
                {
                    // rmcp sends nothing for a cancelled request.
                    self.in_flight.finish(id);
                }
                Some(message)
            }
            // An answer to the server's own request (elicitation); rmcp
            // drops answers to requests it never made.
            JsonRpcMessage::Response(_) | JsonRpcMessage::Error(_) if self.started => Some(message),
            _ => None,
        }
    }

    async fn answer(&self, id: &RequestId, message: &str) {
        let id = serde_json::to_value(id).unwrap_or(Value::Null);
        self.output
            .write_value(&error_response(id, INVALID_REQUEST, message))
            .await;
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
        let output = self.output.clone();
        let in_flight = self.in_flight.clone();
        async move {
            let mut line = serde_json::to_vec(&item).map_err(std::io::Error::other)?;
            line.push(b'\n');
            let written = output.write(&line).await;
            // The slot is given back once the response is out, so a client
            // that stops reading holds its slots.
            if let Some(id) = answered {
                in_flight.finish(&id);
            }
            written
        }
    }

    /// Cancel-safe: rmcp drops a pending receive whenever something else
    /// happens first.
    async fn receive(&mut self) -> Option<ClientJsonRpcMessage> {
        self.messages.recv().await
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.output.0.lock().await.flush().await
    }
}

/// Standard output, shared by rmcp's responses and our own answers.
#[derive(Clone)]
struct Output(Arc<tokio::sync::Mutex<tokio::io::Stdout>>);

impl Output {
    async fn write(&self, line: &[u8]) -> std::io::Result<()> {
        let mut stdout = self.0.lock().await;
        stdout.write_all(line).await?;
        stdout.flush().await
    }

    /// Writes one of our own messages; a client that has gone is not an
    /// error worth more than a log line.
    async fn write_value(&self, value: &Value) {
        let mut line = value.to_string().into_bytes();
        line.push(b'\n');
        if let Err(err) = self.write(&line).await {
            tracing::debug!(target: "stockade::stdio", "cannot write an answer: {err}");
        }
    }
}

/// Requests in flight: one semaphore slot each, held until the response
/// has been written (or the client cancelled the request).
#[derive(Clone)]
struct InFlight {
    slots: Arc<Semaphore>,
    held: Arc<Mutex<HashMap<RequestId, OwnedSemaphorePermit>>>,
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

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RequestId, OwnedSemaphorePermit>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Holds `permit` for request `id`; false when `id` is already in flight.
    fn hold(&self, id: RequestId, permit: OwnedSemaphorePermit) -> bool {
        let mut held = self.lock();
        if held.contains_key(&id) {
            return false;
        }
        held.insert(id, permit);
        true
    }

    /// Request `id` is answered (or cancelled): its slot is free.
    fn finish(&self, id: &RequestId) {
        let mut held = self.lock();
        if held.remove(id).is_some() && held.is_empty() {
            self.emptied.notify_waiters();
        }
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
async fn read_line(
    input: &mut BufReader<tokio::io::Stdin>,
    max: usize,
) -> std::io::Result<Option<Line>> {
    let mut line = Vec::new();
    let mut too_long = false;
    loop {
        let buffer = input.fill_buf().await?;
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
