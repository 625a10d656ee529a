//! The hot path: `tools/call` served straight from the edge.
//!
//! rmcp's service loop hands every request through two channels and two
//! tasks before the handler sees it, each hop a thread to wake. Once a
//! session is open, the edge runs `tools/call` itself, through the same
//! dispatch rmcp's loop calls (`Service::handle_request`, which checks the
//! request's protocol metadata, then runs [`McpServer`]'s `call_tool`), on
//! the reader thread for as long as the call needs nothing to wait for, so
//! that a call that never waits costs no hand-off between threads at all
//! (see [`HotPath::run`]). Everything else (the handshake, listings, pings,
//! answers to the server's own requests, and in a 2026-era session, which
//! has no handshake, its first call) still goes through rmcp.

use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};

use rmcp::model::{
    CallToolRequest, ClientRequest, JsonRpcMessage, RequestId, RequestMetaObject,
    ServerJsonRpcMessage,
};
use rmcp::service::{Peer, RequestContext};
use rmcp::{ErrorData, RoleServer, Service as _};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::output::Output;
use crate::mcp::McpServer;

/// The session's peer, once its handshake is done (or, in a 2026-era
/// session, which has none, once its first call has gone through rmcp);
/// until then every request goes through rmcp.
pub type SessionPeer = Arc<OnceLock<Peer<RoleServer>>>;

/// Runs `tools/call` for one stdio session.
pub struct HotPath {
    server: McpServer,
    peer: SessionPeer,
    runtime: tokio::runtime::Handle,
    /// Every call on the hot path, running here or as a task, so that
    /// the end of a session can wait for them to record how they ended.
    calls: TaskTracker,
}

impl HotPath {
    /// The hot path of `server`, taken once `peer` is set.
    pub fn new(
        server: McpServer,
        peer: SessionPeer,
        runtime: tokio::runtime::Handle,
        calls: TaskTracker,
    ) -> Self {
        Self {
            server,
            peer,
            runtime,
            calls,
        }
    }

    /// Whether calls can take the hot path yet.
    pub fn ready(&self) -> bool {
        self.peer.get().is_some()
    }

    /// Runs one call. It starts on this thread and, since most calls
    /// never have to wait for anything, usually ends here too: its encoded
    /// response is returned, for the caller to write. A call that has to
    /// wait (for a slot, the network, a person, or the epoch's
    /// cooperative yield of a long computation) goes on as a task on the
    /// runtime from its first wait, and queues its response on `output`
    /// itself. Either way nothing is sent once `cancel` is cancelled (the
    /// client cancelled the request, or the session is over), as rmcp does.
    ///
    /// When `more_waiting` (the client has already sent further lines),
    /// the call goes to the runtime at once instead, so that the runtime's
    /// workers run calls on every core while this thread reads the next
    /// ones; a lone call still pays no hand-off.
    pub fn run(
        &self,
        id: RequestId,
        request: CallToolRequest,
        cancel: CancellationToken,
        output: &Output,
        more_waiting: bool,
    ) -> Option<Vec<u8>> {
        let peer = self.peer.get()?.clone();
        let server = self.server.clone();
        let mut call = PanicToError {
            call: Box::pin(respond(server, peer, id.clone(), request, cancel)),
            id: id.clone(),
        };
        let _running = self.calls.token();
        if !more_waiting {
            let _in_runtime = self.runtime.enter();
            let mut context = Context::from_waker(Waker::noop());
            if let Poll::Ready(line) = Pin::new(&mut call).poll(&mut context) {
                return line;
            }
        }
        // The task polls it (again) at once, with a waker of its own.
        let output = output.clone();
        let task = async move {
            if let Some(line) = call.await {
                output.send(line, Some(id));
            }
        };
        self.calls.spawn_on(task, &self.runtime);
        None
    }
}

/// One call's response, to come.
type Responding = Pin<Box<dyn Future<Output = Option<Vec<u8>>> + Send>>;

/// A call whose panic becomes an internal-error answer to its request, so
/// that a bug in one call takes neither the reader thread (which polls it
/// first) nor the request's slot with it.
struct PanicToError {
    call: Responding,
    id: RequestId,
}

impl Future for PanicToError {
    type Output = Option<Vec<u8>>;

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        match std::panic::catch_unwind(AssertUnwindSafe(|| this.call.as_mut().poll(context))) {
            Ok(poll) => poll,
            Err(_) => {
                tracing::error!(target: "stockade::stdio", id = %this.id, "a call panicked; its request is answered with an internal error");
                let error = ErrorData::internal_error("the call failed inside the server", None);
                Poll::Ready(
                    serde_json::to_vec(&ServerJsonRpcMessage::error(error, Some(this.id.clone())))
                        .ok(),
                )
            }
        }
    }
}

/// Runs the request as rmcp's loop would (with a request context built
/// the way rmcp builds it) and encodes the response; `None` if `cancel` was
/// cancelled first.
async fn respond(
    server: McpServer,
    peer: Peer<RoleServer>,
    id: RequestId,
    mut request: CallToolRequest,
    cancel: CancellationToken,
) -> Option<Vec<u8>> {
    let mut context = RequestContext::new(id.clone(), peer);
    context.ct = cancel.clone();
    if let Some(meta) = request.extensions.remove::<RequestMetaObject>() {
        context.meta = meta;
    }
    context.extensions = std::mem::take(&mut request.extensions);
    // rmcp's own dispatch: its per-request checks (a protocol version named
    // in `_meta` must be supported, 2026-era metadata must be whole) apply
    // here as on rmcp's path.
    let result = server
        .handle_request(ClientRequest::CallToolRequest(request), context)
        .await;
    if cancel.is_cancelled() {
        return None;
    }
    let message: ServerJsonRpcMessage = match result {
        Ok(result) => JsonRpcMessage::response(result, id.clone()),
        Err(error) => JsonRpcMessage::error(error, Some(id.clone())),
    };
    match serde_json::to_vec(&message) {
        Ok(line) => Some(line),
        Err(err) => {
            tracing::error!(target: "stockade::stdio", "cannot encode a response: {err}");
            let error = ErrorData::internal_error("the response could not be encoded", None);
            serde_json::to_vec(&ServerJsonRpcMessage::error(error, Some(id))).ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poll_once(call: Responding, id: i64) -> Poll<Option<Vec<u8>>> {
        let mut call = PanicToError {
            call,
            id: RequestId::Number(id),
        };
        Pin::new(&mut call).poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn a_panicking_call_is_answered_with_an_internal_error() {
        let Poll::Ready(Some(line)) = poll_once(Box::pin(async { panic!("a bug") }), 7) else {
            panic!("a panic must end the call with an answer");
        };
        let answer: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(answer["id"], 7);
        assert_eq!(answer["error"]["code"], -32603);
        // Calls that do not panic pass through untouched.
        let ready = poll_once(Box::pin(async { Some(b"line".to_vec()) }), 8);
        assert_eq!(ready, Poll::Ready(Some(b"line".to_vec())));
        assert_eq!(
            poll_once(Box::pin(std::future::pending()), 9),
            Poll::Pending
        );
    }
}
