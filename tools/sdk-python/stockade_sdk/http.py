"""Outgoing HTTP through the host's egress policy.

The host decides whether a request may leave: a destination that is not on
the tool's allowlist raises ``HttpError`` with ``denied`` set. Credentials
are added by the host, never by the tool.
"""

from typing import Optional
from urllib.parse import urlsplit

from componentize_py_types import Err
from wit_world.imports import outgoing_handler, streams
from wit_world.imports import wasi_http_types as wasi

_METHODS = {
    "GET": wasi.Method_Get,
    "HEAD": wasi.Method_Head,
    "POST": wasi.Method_Post,
    "PUT": wasi.Method_Put,
    "DELETE": wasi.Method_Delete,
    "PATCH": wasi.Method_Patch,
    "OPTIONS": wasi.Method_Options,
}

_CHUNK = 64 * 1024


class HttpError(Exception):
    """A request that did not get a response; ``denied`` when the egress
    policy refused its destination."""

    def __init__(self, message: str, denied: bool = False) -> None:
        super().__init__(message)
        self.denied = denied


class Response:
    """A response: status, headers (lower-case names) and the whole body."""

    def __init__(self, status: int, headers: dict, body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def text(self) -> str:
        """The body as UTF-8 text."""
        return self.body.decode("utf-8", errors="replace")


def request(
    method: str, url: str, headers: Optional[dict] = None, body: Optional[bytes] = None
) -> Response:
    """Sends one request and reads the whole response."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise HttpError(f"bad url: {url!r} is not an http(s) URL")
    if method.upper() not in _METHODS:
        raise HttpError(f"method {method!r} is not supported")
    fields = wasi.Fields.from_list(
        [(name.lower(), value.encode()) for name, value in (headers or {}).items()]
    )
    outgoing = wasi.OutgoingRequest(fields)
    outgoing.set_method(_METHODS[method.upper()]())
    outgoing.set_scheme(wasi.Scheme_Https() if parts.scheme == "https" else wasi.Scheme_Http())
    outgoing.set_authority(parts.netloc)
    path = parts.path or "/"
    outgoing.set_path_with_query(path + ("?" + parts.query if parts.query else ""))
    outgoing_body = outgoing.body()
    try:
        future = outgoing_handler.handle(outgoing, None)
    except Err as err:
        raise _error(err.value)
    sink = outgoing_body.write()
    if body:
        for start in range(0, len(body), 4096):
            sink.blocking_write_and_flush(body[start : start + 4096])
    sink.__exit__(None, None, None)
    wasi.OutgoingBody.finish(outgoing_body, None)
    while True:
        ready = future.get()
        if ready is not None:
            break
        future.subscribe().block()
    if isinstance(ready, Err) or isinstance(ready.value, Err):
        code = ready.value if isinstance(ready, Err) else ready.value.value
        raise _error(code)
    incoming = ready.value.value
    status = incoming.status()
    response_headers = {}
    for name, value in incoming.headers().entries():
        response_headers[name.lower()] = value.decode("latin-1")
    incoming_body = incoming.consume()
    stream = incoming_body.stream()
    chunks = []
    while True:
        try:
            chunks.append(stream.blocking_read(_CHUNK))
        except Err as err:
            if isinstance(err.value, streams.StreamError_Closed):
                break
            raise HttpError(f"reading the response failed: {err.value}")
    stream.__exit__(None, None, None)
    wasi.IncomingBody.finish(incoming_body)
    return Response(status, response_headers, b"".join(chunks))


def get(url: str, headers: Optional[dict] = None) -> Response:
    """Sends a GET request."""
    return request("GET", url, headers)


def post(url: str, body: bytes, headers: Optional[dict] = None) -> Response:
    """Sends a POST request with a body."""
    return request("POST", url, headers, body)


def _error(code) -> HttpError:
    if isinstance(code, wasi.ErrorCode_HttpRequestDenied):
        return HttpError("request denied by the egress policy", denied=True)
    if isinstance(code, wasi.ErrorCode_HttpResponseBodySize):
        return HttpError("response body too large")
    return HttpError(f"request failed: {type(code).__name__.removeprefix('ErrorCode_')}")
