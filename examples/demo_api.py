"""A tiny local API for the README's secrets walk-through.

It answers GET /data with JSON when the request carries
`Authorization: Bearer <token>`, where the token is the one in the
development secrets file that `cargo xtask demo` creates, and 401 otherwise.

    python3 examples/demo_api.py [.stockade/dev-secrets.toml]
"""

import http.server
import sys
import tomllib

path = sys.argv[1] if len(sys.argv) > 1 else ".stockade/dev-secrets.toml"
with open(path, "rb") as f:
    TOKEN = tomllib.load(f)["secret/data/tools/demo-api#token"]


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ok = self.headers.get("Authorization") == f"Bearer {TOKEN}"
        body = b'{"forecast": "sunny", "source": "demo api"}' if ok else b"401: missing or wrong bearer token"
        self.send_response(200 if ok else 401)
        self.send_header("Content-Type", "application/json" if ok else "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


print("demo API on http://127.0.0.1:8701/data (needs the bearer token)", file=sys.stderr)
http.server.HTTPServer(("127.0.0.1", 8701), Handler).serve_forever()
