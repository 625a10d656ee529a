"""Helpers for the HTTP end-to-end tests: `stockade serve --http` on a free
loopback port, API keys made by `stockade apikey new`, an MCP client with a
bearer token, a token issuer the tests hold the key of, and the real
authorization server (oidc-provider)."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path

import httpx2
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from conftest import BINARY, ROOT

NODE_DIR = ROOT / "tests" / "node"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api_key(client: str, *, user: str | None = None, groups=(), scopes=()) -> tuple[str, dict]:
    """A key from `stockade apikey new`: (key, the config entry as a dict)."""
    args = [str(BINARY), "apikey", "new", "--client", client]
    if user:
        args += ["--user", user]
    for g in groups:
        args += ["--group", g]
    for s in scopes:
        args += ["--scope", s]
    out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=30).stdout
    key = re.search(r"^(stk_\S+)$", out, re.M).group(1)
    digest = re.search(r'^sha256 = "([0-9a-f]{64})"$', out, re.M).group(1)
    entry = {"client": client, "groups": list(groups), "scopes": list(scopes), "sha256": digest}
    if user:
        entry["user"] = user
    return key, entry


class HttpStockade:
    """`stockade serve --http 127.0.0.1:PORT` for a deployment."""

    def __init__(self, deployment, *, extra_args=(), scheme="http", env=None):
        self.port = free_port()
        self.url = f"{scheme}://127.0.0.1:{self.port}/mcp"
        self.base = f"{scheme}://127.0.0.1:{self.port}"
        config = deployment.write()
        self.proc = subprocess.Popen(
            [str(BINARY), "serve", "--config", str(config), "--http", f"127.0.0.1:{self.port}", *extra_args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={"PATH": os.environ.get("PATH", ""), "STOCKADE_LOG": "info", **(env or {})},
        )
        self.lines: list[str] = []
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self.ready.wait(60) or self.proc.poll() is not None:
            self.stop()
            raise RuntimeError("stockade did not start serving HTTP:\n" + self.log)

    def _read(self):
        for line in self.proc.stderr:
            self.lines.append(line)
            if "serving MCP over HTTP" in line:
                self.ready.set()
        self.ready.set()

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, count: int = 1, timeout: float = 10) -> str:
        """The log once `text` is in it `count` times (stderr is read by
        a thread, so a line can trail the response it belongs to)."""
        deadline = time.time() + timeout
        while self.log.count(text) < count and time.time() < deadline:
            time.sleep(0.05)
        return self.log

    def settle(self, quiet: float = 0.2, timeout: float = 5) -> None:
        """Waits until no new log line has come for `quiet` seconds."""
        deadline = time.time() + timeout
        seen = -1
        while len(self.lines) != seen and time.time() < deadline:
            seen = len(self.lines)
            time.sleep(quiet)

    def audit(self) -> list[dict]:
        """Audit records logged so far (once the log has settled)."""
        self.settle()
        records = []
        for line in self.lines:
            if "stockade::audit: " in line:
                records.append(json.loads(line.split("stockade::audit: ", 1)[1]))
        return records

    def stop(self, sig=signal.SIGTERM, timeout=30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


@asynccontextmanager
async def mcp_client(url: str, token: str | None, mode: str = "legacy", verify=True, cert=None, **client_args):
    """The Python MCP client over Streamable HTTP with a bearer token
    (`client_args` go to `Client`, e.g. an elicitation callback)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    http = create_mcp_http_client(headers=headers)
    if verify is not True or cert is not None:
        http = httpx2.AsyncClient(headers=headers, verify=verify, cert=cert, timeout=httpx2.Timeout(30, read=300))
    async with Client(streamable_http_client(url, http_client=http), mode=mode, **client_args) as c:
        yield c


INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}},
}
MCP_HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}


def post(url: str, body, *, token: str | None = None, headers=None, **kwargs) -> httpx2.Response:
    """One raw POST to the MCP endpoint."""
    h = dict(MCP_HEADERS)
    if token:
        h["Authorization"] = f"Bearer {token}"
    h.update(headers or {})
    return httpx2.post(url, content=json.dumps(body) if not isinstance(body, (str, bytes)) else body, headers=h, timeout=30, **kwargs)


def sse_json(response: httpx2.Response) -> dict:
    """The JSON-RPC message in a JSON or SSE response."""
    if response.headers.get("content-type", "").startswith("application/json"):
        return response.json()
    for line in response.text.splitlines():
        if line.startswith("data:") and line[5:].strip():
            return json.loads(line[5:])
    raise AssertionError(f"no message in {response.text!r}")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Issuer:
    """A token issuer the test holds the key of: RFC 8414 metadata and a
    JWKS on 127.0.0.1, and any token the test wants, signed or forged."""

    def __init__(self):
        import http.server

        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "test-key-1"
        self.hits: list[str] = []
        issuer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                issuer.hits.append(self.path)
                if self.path == "/.well-known/oauth-authorization-server":
                    body = {"issuer": issuer.url, "jwks_uri": f"{issuer.url}/jwks", "token_endpoint": f"{issuer.url}/token"}
                elif self.path == "/jwks":
                    body = {"keys": [issuer.public_jwk()]}
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def public_jwk(self, key=None, kid=None) -> dict:
        numbers = (key or self.key).public_key().public_numbers()
        as_bytes = lambda n: n.to_bytes((n.bit_length() + 7) // 8, "big")
        return {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid or self.kid,
                "n": b64url(as_bytes(numbers.n)), "e": b64url(as_bytes(numbers.e))}

    def private_pem(self, key=None) -> bytes:
        return (key or self.key).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def public_pem(self) -> bytes:
        return self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def claims(self, audience: str, **overrides) -> dict:
        now = int(time.time())
        claims = {"iss": self.url, "aud": audience, "sub": "ann", "client_id": "agent-x",
                  "iat": now, "nbf": now, "exp": now + 300, "scope": "tools:read", "groups": ["analysts"]}
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def token(self, audience: str, *, headers=None, key=None, algorithm="RS256", **overrides) -> str:
        h = {"kid": self.kid, "typ": "at+jwt"}
        h.update(headers or {})
        return jwt.encode(self.claims(audience, **overrides), self.private_pem(key), algorithm=algorithm, headers=h)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class AuthServer:
    """oidc-provider (tests/node/authserver.mjs) on 127.0.0.1."""

    def __init__(self, port: int | None = None, kid: str = "k1", opaque: bool = False):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            ["node", "authserver.mjs", str(self.port), kid, *(["opaque"] if opaque else [])],
            cwd=NODE_DIR, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for line in self.proc.stdout:
            if "READY" in line:
                break
        else:
            raise RuntimeError("the authorization server did not start")
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()

    def token(self, client: str, resource: str, scope: str = "tools:read") -> str:
        r = httpx2.post(f"{self.url}/token", auth=(client, f"{client}-secret"),
                        data={"grant_type": "client_credentials", "scope": scope, "resource": resource}, timeout=30)
        r.raise_for_status()
        return r.json()["access_token"]

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)
