//! Explains, in the call's refusals, the failures the host's own
//! egress budgets cause (`max_response`, `max_request`, `read_timeout`,
//! `connect_timeout`), so the client is told which manifest key stopped a
//! request instead of whatever the tool chose to say about it.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame};
use wasmtime_wasi_http::{Error as HttpError, RequestOptions};

use super::policy::{Destination, EgressPolicy};
use crate::refusals::Refusals;

/// Records one line per budget-caused failure of one request.
#[derive(Clone)]
pub(super) struct FailureNotes {
    refusals: Refusals,
    destination: String,
    max_response_bytes: u64,
    max_request_bytes: u64,
    /// `egress.read_timeout`, unless the tool asked for a shorter one (then
    /// a timeout is the tool's own doing and is not attributed to the host).
    read_timeout: Option<Duration>,
    /// `egress.connect_timeout`, on the same terms.
    connect_timeout: Option<Duration>,
}

impl FailureNotes {
    /// Notes for a request to `dest` under `policy`, sent with `options`.
    pub(super) fn new(
        refusals: Refusals,
        dest: &Destination,
        policy: &EgressPolicy,
        options: Option<RequestOptions>,
    ) -> Self {
        let ours = |asked: Option<Duration>, limit: Duration| {
            asked.is_none_or(|a| a >= limit).then_some(limit)
        };
        let options = options.unwrap_or_default();
        let read_asked = match (options.first_byte_timeout, options.between_bytes_timeout) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Self {
            refusals,
            destination: dest.to_string(),
            max_response_bytes: policy.max_response_bytes,
            max_request_bytes: policy.max_request_bytes,
            read_timeout: ours(read_asked, policy.read_timeout),
            connect_timeout: ours(options.connect_timeout, policy.connect_timeout),
        }
    }

    /// Records why `err` happened when a host budget caused it; returns `err`.
    pub(super) fn note(&self, err: HttpError) -> HttpError {
        if let Some(line) = self.explain(&err) {
            self.refusals.record(line);
        }
        err
    }

    fn explain(&self, err: &HttpError) -> Option<String> {
        let dest = &self.destination;
        let ms = |d: Duration| d.as_millis();
        match err {
            HttpError::HttpResponseBodySize(Some(n)) if *n == self.max_response_bytes => {
                Some(format!(
                    "egress failed: the response from {dest} is larger than egress.max_response ({n} bytes)"
                ))
            }
            HttpError::HttpRequestBodySize(Some(n)) if *n == self.max_request_bytes => {
                Some(format!(
                    "egress failed: the request to {dest} is larger than egress.max_request ({n} bytes)"
                ))
            }
            HttpError::ConnectionReadTimeout => self.read_timeout.map(|t| {
                format!(
                    "egress failed: {dest} sent nothing for egress.read_timeout ({} ms)",
                    ms(t)
                )
            }),
            HttpError::ConnectionTimeout => self.connect_timeout.map(|t| {
                format!(
                    "egress failed: {dest} did not connect within egress.connect_timeout ({} ms)",
                    ms(t)
                )
            }),
            _ => None,
        }
    }

    /// Wraps a response body so a budget failure while it is read is noted.
    pub(super) fn watch<B>(&self, body: B) -> NotedBody<B> {
        NotedBody {
            inner: body,
            notes: self.clone(),
        }
    }
}

/// A response body whose budget failures end up in the call's refusals.
pub(super) struct NotedBody<B> {
    inner: B,
    notes: FailureNotes,
}

impl<B> Body for NotedBody<B>
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
            Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(this.notes.note(err)))),
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egress::EgressScheme;

    fn notes(options: Option<RequestOptions>) -> (FailureNotes, Refusals) {
        let refusals = Refusals::new("t");
        let dest = Destination {
            scheme: EgressScheme::Http,
            host: "127.0.0.1".into(),
            port: 8080,
            allow_private: true,
        };
        let policy = EgressPolicy {
            read_timeout: Duration::from_secs(2),
            max_response_bytes: 1024,
            ..EgressPolicy::default()
        };
        (
            FailureNotes::new(refusals.clone(), &dest, &policy, options),
            refusals,
        )
    }

    #[test]
    fn names_the_budget_that_stopped_a_request_once() {
        let (notes, refusals) = notes(None);
        notes.note(HttpError::HttpResponseBodySize(Some(1024)));
        notes.note(HttpError::HttpResponseBodySize(Some(1024)));
        notes.note(HttpError::ConnectionReadTimeout);
        notes.note(HttpError::ConnectionRefused);
        let (denied, _) = refusals.snapshot();
        assert_eq!(
            denied,
            [
                "egress failed: the response from http://127.0.0.1:8080 is larger than egress.max_response (1024 bytes)",
                "egress failed: http://127.0.0.1:8080 sent nothing for egress.read_timeout (2000 ms)",
            ]
        );
    }

    #[test]
    fn a_shorter_timeout_the_tool_asked_for_is_not_blamed_on_the_host() {
        let (notes, refusals) = notes(Some(RequestOptions {
            first_byte_timeout: Some(Duration::from_millis(100)),
            ..RequestOptions::default()
        }));
        notes.note(HttpError::ConnectionReadTimeout);
        notes.note(HttpError::HttpResponseBodySize(Some(10)));
        assert!(refusals.is_empty());
    }
}
