//! The one network path a tool has: the `wasi:http` outgoing handler, routed
//! through [`EgressHooks`], which admits, resolves, checks and connects to
//! the checked address itself.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::uri::Scheme;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame};
use tokio::net::TcpStream;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use super::failure::FailureNotes;
use super::policy::{Destination, EgressPolicy, EgressScheme};
use super::response::scrub_response;
use crate::refusals::Refusals;
use crate::secrets::inject::{refuse_credential_pieces, refuse_placeholders};
use crate::secrets::{Redactor, SecretGrant};

/// Distinct destinations one call's record keeps.
const MAX_RECORDED_DESTINATIONS: usize = 32;

/// What the egress layer saw during one call, for the call's outcome.
/// (Refusals go to the call's [`Refusals`].)
#[derive(Debug, Default, Clone)]
pub struct EgressRecord {
    /// Distinct destinations contacted, `scheme://host:port`, in order;
    /// at most 32.
    pub contacted: Vec<String>,
    /// Requests the tool attempted, refused ones included.
    pub requests: u32,
}

impl EgressRecord {
    /// Counts one attempted request; returns the count so far.
    fn attempt(&mut self) -> u32 {
        self.requests = self.requests.saturating_add(1);
        self.requests
    }

    /// Remembers that `dest` was contacted.
    fn sent(&mut self, dest: &Destination) {
        let dest = dest.to_string();
        if self.contacted.len() < MAX_RECORDED_DESTINATIONS && !self.contacted.contains(&dest) {
            self.contacted.push(dest);
        }
    }
}

/// Per-call `wasi:http` hooks enforcing an [`EgressPolicy`] and injecting
/// the tool's secrets into requests bound for their destinations.
pub struct EgressHooks {
    policy: Arc<EgressPolicy>,
    tls: Arc<rustls::ClientConfig>,
    record: Arc<Mutex<EgressRecord>>,
    refusals: Refusals,
    secrets: Option<Arc<SecretGrant>>,
    redactor: Arc<Redactor>,
    /// The value of the call-depth header on every request.
    next_depth: http::HeaderValue,
}

impl EgressHooks {
    /// Hooks for one call at `call_depth`; `record` collects what was
    /// contacted, `refusals` what was refused, and `redactor` (the
    /// process's) every secret value injected.
    pub fn new(
        policy: Arc<EgressPolicy>,
        tls: Arc<rustls::ClientConfig>,
        record: Arc<Mutex<EgressRecord>>,
        refusals: Refusals,
        secrets: Option<Arc<SecretGrant>>,
        redactor: Arc<Redactor>,
        call_depth: u32,
    ) -> Self {
        Self {
            policy,
            tls,
            record,
            refusals,
            secrets,
            redactor,
            next_depth: http::HeaderValue::from(call_depth.saturating_add(1)),
        }
    }
}

/// The TLS client configuration used for every outgoing HTTPS request:
/// the public web PKI roots, TLS 1.2+.
pub fn default_tls_config() -> Arc<rustls::ClientConfig> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.into(),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                ),
                HttpError,
            >,
        > + Send,
>;

impl WasiHttpHooks for EgressHooks {
    fn is_forbidden_header(&mut self, name: &http::HeaderName) -> bool {
        wasmtime_wasi_http::DEFAULT_FORBIDDEN_HEADERS.contains(name)
    }

    fn is_supported_scheme(&mut self, scheme: &Scheme) -> bool {
        *scheme == Scheme::HTTP || *scheme == Scheme::HTTPS
    }

    /// Admits the destination, reads the (capped) request body and refuses
    /// placeholders and credential pieces in the request, resolves and
    /// checks the addresses, injects the secrets bound there, sends, and —
    /// for a tool that holds secrets — scrubs the response whatever its
    /// origin.
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> SendFuture {
        let policy = self.policy.clone();
        let tls = self.tls.clone();
        let record = self.record.clone();
        let refusals = self.refusals.clone();
        let secrets = self.secrets.clone();
        let redactor = self.redactor.clone();
        let next_depth = self.next_depth.clone();
        Box::new(async move {
            let deny = |reason: String| {
                refusals.record(reason);
                HttpError::HttpRequestDenied
            };
            let attempted = record.lock().expect("egress record").attempt();
            if attempted > policy.max_requests {
                return Err(deny(format!(
                    "egress denied: the call has made egress.max_requests ({}) requests",
                    policy.max_requests
                )));
            }
            let dest = policy
                .admit(request.uri())
                .map_err(|d| deny(d.to_string()))?;
            let notes = FailureNotes::new(refusals.clone(), &dest, &policy, options);
            let (parts, body) = request.into_parts();
            let body = CappedBody::new(body, policy.max_request_bytes, Direction::Request)
                .collect()
                .await
                .map_err(|err| notes.note(err))?
                .to_bytes();
            refuse_placeholders(&parts.uri, &parts.headers, &body).map_err(deny)?;
            refuse_credential_pieces(&redactor.scrubber(), &parts.uri, &parts.headers, &body)
                .map_err(deny)?;
            let addrs = policy
                .resolve(&dest)
                .await
                .map_err(|d| deny(d.to_string()))?;
            let body = http_body_util::Full::new(body)
                .map_err(|never| match never {})
                .boxed_unsync();
            let mut request = http::Request::from_parts(parts, body);
            // Ours, whatever the tool set: a server this request reaches
            // that calls Stockade again passes the depth on.
            request
                .headers_mut()
                .insert(crate::CALL_DEPTH_HEADER, next_depth);
            if let Some(secrets) = &secrets {
                secrets
                    .inject(&dest, &mut request, &redactor)
                    .await
                    .map_err(deny)?;
                // A compressed response could not be scrubbed: ask for none.
                request.headers_mut().insert(
                    http::header::ACCEPT_ENCODING,
                    http::HeaderValue::from_static("identity"),
                );
            }
            record.lock().expect("egress record").sent(&dest);
            let (response, io) = send_pinned(request, options, &policy, &dest, &addrs, tls)
                .await
                .map_err(|err| notes.note(err))?;
            let response = response.map(|body| notes.watch(body).boxed_unsync());
            if secrets.is_none() {
                return Ok((response, io));
            }
            let response = scrub_response(response, &redactor.scrubber())
                .await
                .map_err(deny)?;
            Ok((response, io))
        })
    }
}

/// Connects to one of the checked addresses (never re-resolving the name),
/// speaks HTTP/1.1 over it, with TLS for `https`, and bounds every phase.
async fn send_pinned(
    mut request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
    policy: &EgressPolicy,
    dest: &Destination,
    addrs: &[std::net::SocketAddr],
    tls: Arc<rustls::ClientConfig>,
) -> Result<
    (
        http::Response<WasiBody>,
        Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ),
    HttpError,
> {
    let shorter = |asked: Option<Duration>, ours: Duration| asked.map_or(ours, |a| a.min(ours));
    let connect_timeout = shorter(
        options.and_then(|o| o.connect_timeout),
        policy.connect_timeout,
    );
    let first_byte = shorter(
        options.and_then(|o| o.first_byte_timeout),
        policy.read_timeout,
    );
    let between_bytes = shorter(
        options.and_then(|o| o.between_bytes_timeout),
        policy.read_timeout,
    );

    let connect = async {
        let mut last = None;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(stream) => return Ok(stream),
                Err(err) => last = Some(err),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("no address")))
    };
    let tcp = tokio::time::timeout(connect_timeout, connect)
        .await
        .map_err(|_| HttpError::ConnectionTimeout)?
        .map_err(|_| HttpError::ConnectionRefused)?;

    let (mut sender, conn) = match dest.scheme {
        EgressScheme::Https => {
            let name = rustls::pki_types::ServerName::try_from(dest.host.clone())
                .map_err(|_| HttpError::TlsCertificateError)?;
            let connector = tokio_rustls::TlsConnector::from(tls);
            let stream = tokio::time::timeout(connect_timeout, connector.connect(name, tcp))
                .await
                .map_err(|_| HttpError::ConnectionTimeout)?
                .map_err(|_| HttpError::TlsCertificateError)?;
            handshake(Box::new(stream)).await?
        }
        EgressScheme::Http => handshake(Box::new(tcp)).await?,
    };

    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    *request.uri_mut() = http::Uri::builder()
        .path_and_query(path)
        .build()
        .map_err(|_| HttpError::HttpRequestUriInvalid)?;
    // The Host header names what was admitted and checked, whatever
    // spelling of the authority the tool used.
    let host = http::HeaderValue::from_str(&dest.authority())
        .map_err(|_| HttpError::HttpRequestUriInvalid)?;
    request.headers_mut().insert(http::header::HOST, host);

    // The body was read whole, within `max_request`, before admission.
    let io = tokio::spawn(conn);
    let response = tokio::time::timeout(first_byte, sender.send_request(request))
        .await
        .map_err(|_| HttpError::ConnectionReadTimeout)?
        .map_err(|_| HttpError::HttpProtocolError)?;
    let max_response = policy.max_response_bytes;
    let response = response.map(|body| {
        let body = body.map_err(|_| HttpError::HttpResponseIncomplete);
        let body = IdleTimeoutBody::new(body, between_bytes);
        CappedBody::new(body, max_response, Direction::Response).boxed_unsync()
    });
    let io_done = async move {
        match io.await {
            Ok(Ok(())) => Ok(()),
            _ => Err(HttpError::ConnectionTerminated),
        }
    };
    Ok((response, Box::new(io_done)))
}

trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> Stream for T {}

async fn handshake(
    stream: Box<dyn Stream>,
) -> Result<
    (
        hyper::client::conn::http1::SendRequest<WasiBody>,
        hyper::client::conn::http1::Connection<TokioIo<Box<dyn Stream>>, WasiBody>,
    ),
    HttpError,
> {
    hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|_| HttpError::HttpProtocolError)
}

#[derive(Clone, Copy)]
enum Direction {
    Request,
    Response,
}

/// A body that fails once more than `limit` bytes have passed through it.
struct CappedBody<B> {
    inner: B,
    remaining: u64,
    limit: u64,
    direction: Direction,
}

impl<B> CappedBody<B> {
    fn new(inner: B, limit: u64, direction: Direction) -> Self {
        Self {
            inner,
            remaining: limit,
            limit,
            direction,
        }
    }
}

impl<B> Body for CappedBody<B>
where
    B: Body<Data = Bytes, Error = HttpError> + Unpin,
{
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if len > this.remaining {
                        this.remaining = 0;
                        let limit = Some(this.limit);
                        return Poll::Ready(Some(Err(match this.direction {
                            Direction::Request => HttpError::HttpRequestBodySize(limit),
                            Direction::Response => HttpError::HttpResponseBodySize(limit),
                        })));
                    }
                    this.remaining -= len;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
}

/// A body that fails when no frame arrives for `idle`.
struct IdleTimeoutBody<B> {
    inner: B,
    idle: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl<B> IdleTimeoutBody<B> {
    fn new(inner: B, idle: Duration) -> Self {
        Self {
            inner,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
        }
    }
}

impl<B> Body for IdleTimeoutBody<B>
where
    B: Body<Data = Bytes, Error = HttpError> + Unpin,
{
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout))),
                Poll::Pending => Poll::Pending,
            },
            ready => {
                let deadline = tokio::time::Instant::now() + this.idle;
                this.timer.as_mut().reset(deadline);
                ready
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
}
