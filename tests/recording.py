"""A recording HTTP server for the tests' upstreams: started on a free
127.0.0.1 port, it keeps every request and lets a subclass answer."""

from __future__ import annotations

import http.server
import threading


class RecordingServer:
    """A local HTTP/1.1 server on a free 127.0.0.1 port that records every
    request (target, headers in order, body) and lets `respond` answer."""

    def __init__(self):
        self.seen: list[dict] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            # HTTP/1.1, so that transfer codings are legal in responses.
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                self.handle_any(b"")

            def do_POST(self):
                self.handle_any(self.rfile.read(int(self.headers.get("Content-Length") or 0)))

            def handle_any(self, body: bytes):
                owner.seen.append(owner.record(self, body))
                owner.respond(self, body)

            def reply(self, status, body, headers=None):
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def record(self, handler, body: bytes) -> dict:
        """What `seen` keeps of one request."""
        return {"target": handler.path, "headers": list(handler.headers.items()), "body": body}

    def respond(self, handler, body: bytes):
        raise NotImplementedError

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
