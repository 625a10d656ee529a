//! Outgoing HTTP through the host's egress policy.
//!
//! The host decides whether a request may leave: a destination that is not
//! on the tool's allowlist fails with [`HttpError::Denied`]. Credentials
//! are added by the host, never by the tool.

use wasi::http::outgoing_handler;
use wasi::http::types::{ErrorCode, Fields, Method, OutgoingBody, OutgoingRequest, Scheme};
use wasi::io::streams::StreamError;

/// Why a request failed.
#[derive(Debug)]
pub enum HttpError {
    /// The URL could not be used.
    BadUrl(String),
    /// The host's egress policy refused the destination.
    Denied,
    /// The response body exceeded what the host or the caller allows.
    TooLarge,
    /// Any other transport failure.
    Transport(String),
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::BadUrl(why) => write!(f, "bad url: {why}"),
            Self::Denied => write!(f, "request denied by the egress policy"),
            Self::TooLarge => write!(f, "response body too large"),
            Self::Transport(why) => write!(f, "request failed: {why}"),
        }
    }
}

impl From<ErrorCode> for HttpError {
    fn from(code: ErrorCode) -> Self {
        match code {
            ErrorCode::HttpRequestDenied => Self::Denied,
            ErrorCode::HttpResponseBodySize(_) => Self::TooLarge,
            other => Self::Transport(format!("{other:?}")),
        }
    }
}

/// A response: status, headers and the whole body.
#[derive(Debug)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// Header names (lower case) and values.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Response {
    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The first value of header `name` as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
}

/// A request being built.
pub struct Request {
    method: Method,
    url: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    max_body: usize,
}

impl Request {
    /// A GET request.
    pub fn get(url: &str) -> Self {
        Self::new(Method::Get, url)
    }

    /// A POST request.
    pub fn post(url: &str) -> Self {
        Self::new(Method::Post, url)
    }

    fn new(method: Method, url: &str) -> Self {
        Self {
            method,
            url: url.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
            max_body: 1 << 20,
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push((name.to_owned(), value.as_bytes().to_vec()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Reads at most this many body bytes (default 1 MiB); more is an error.
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// Sends the request and reads the whole response.
    pub fn send(self) -> Result<Response, HttpError> {
        let (scheme, authority, path) = split_url(&self.url)?;
        let headers = Fields::new();
        if !self.body.is_empty() {
            headers
                .append("content-length", self.body.len().to_string().as_bytes())
                .map_err(|e| HttpError::BadUrl(format!("header content-length: {e:?}")))?;
        }
        for (name, value) in &self.headers {
            headers
                .append(name, value)
                .map_err(|e| HttpError::BadUrl(format!("header {name}: {e:?}")))?;
        }
        let request = OutgoingRequest::new(headers);
        let bad = |what: &str| HttpError::BadUrl(what.to_owned());
        request
            .set_method(&self.method)
            .map_err(|()| bad("method"))?;
        request
            .set_scheme(Some(&scheme))
            .map_err(|()| bad("scheme"))?;
        request
            .set_authority(Some(authority))
            .map_err(|()| bad("authority"))?;
        request
            .set_path_with_query(Some(&path))
            .map_err(|()| bad("path"))?;
        let outgoing = request.body().map_err(|()| bad("body"))?;
        let pending = outgoing_handler::handle(request, None)?;
        {
            let stream = outgoing.write().map_err(|()| bad("body"))?;
            for chunk in self.body.chunks(4096) {
                stream
                    .blocking_write_and_flush(chunk)
                    .map_err(|e| HttpError::Transport(format!("{e:?}")))?;
            }
        }
        OutgoingBody::finish(outgoing, None)?;
        pending.subscribe().block();
        let response = pending
            .get()
            .ok_or_else(|| HttpError::Transport("no response".into()))?
            .map_err(|()| HttpError::Transport("response taken twice".into()))??;
        let status = response.status();
        let headers = response
            .headers()
            .entries()
            .into_iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v))
            .collect();
        let incoming = response
            .consume()
            .map_err(|()| HttpError::Transport("body".into()))?;
        let mut body = Vec::new();
        {
            let stream = incoming
                .stream()
                .map_err(|()| HttpError::Transport("body".into()))?;
            loop {
                match stream.blocking_read(64 * 1024) {
                    Ok(chunk) => {
                        if body.len() + chunk.len() > self.max_body {
                            return Err(HttpError::TooLarge);
                        }
                        body.extend_from_slice(&chunk);
                    }
                    Err(StreamError::Closed) => break,
                    Err(StreamError::LastOperationFailed(e)) => {
                        let code = wasi::http::types::http_error_code(&e);
                        return Err(code.map_or_else(
                            || HttpError::Transport(e.to_debug_string()),
                            HttpError::from,
                        ));
                    }
                }
            }
        }
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

/// Sends a GET request and returns the response.
pub fn get(url: &str) -> Result<Response, HttpError> {
    Request::get(url).send()
}

/// Splits `scheme://authority/path?query`; the host re-checks everything.
fn split_url(url: &str) -> Result<(Scheme, &str, String), HttpError> {
    let (scheme, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (Scheme::Https, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (Scheme::Http, rest)
    } else {
        return Err(HttpError::BadUrl("only http:// and https:// URLs".into()));
    };
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    if authority.is_empty() {
        return Err(HttpError::BadUrl("missing host".into()));
    }
    let path = match path.chars().next() {
        None => "/".to_owned(),
        Some('?') => format!("/{path}"),
        Some(_) => path.to_owned(),
    };
    Ok((scheme, authority, path))
}
