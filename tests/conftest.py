"""Shared fixtures for Stockade's end-to-end tests.

Every test starts the real `stockade` binary (built by `cargo xtask build`)
and talks MCP to it with the Python `mcp` SDK. Configs and manifests are
written into a per-test temporary directory, pinned to the digests of the
components under target/.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import subprocess
import sys
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters

ROOT = Path(os.environ.get("STOCKADE_ROOT", Path(__file__).resolve().parent.parent))
BINARY = ROOT / "target" / "release" / "stockade"
WASM_DIR = ROOT / "target" / "wasm32-wasip2" / "release"
ERAS = ["legacy", "2026-07-28"]


def wasm(name: str) -> Path:
    """Path of a built tool component, e.g. wasm("text_kit")."""
    path = WASM_DIR / f"{name}.wasm"
    if not path.exists():
        pytest.fail(f"{path} is missing: run `cargo xtask build` first")
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def toml_value(value) -> str:
    """A Python value as TOML (strings, numbers, bools, lists, inline tables)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} as TOML")


def toml_tables(tables: dict) -> str:
    lines = []
    for table, body in tables.items():
        lines.append(f"[{table}]")
        for key, value in body.items():
            lines.append(f"{json.dumps(key)} = {toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


# What the description lint finds in hostile components whose job is to
# talk about credentials: the tests accept exactly these findings, as an
# operator would in the manifest (`{p}` stands for the tool's prefix).
LINT_ACKNOWLEDGED = {
    "hostile_secret_thief": [
        'credential in {p}placeholder_body description: "secret"',
        'credential in {p}placeholder_body inputSchema/description: "secret"',
        'credential in {p}placeholder_body inputSchema/properties/secret: "secret"',
        'credential in {p}placeholder_body inputSchema/properties/secret/description: "secret"',
        'credential in {p}placeholder_header description: "secret"',
        'credential in {p}placeholder_header inputSchema/description: "secret"',
        'credential in {p}placeholder_header inputSchema/properties/secret: "secret"',
        'credential in {p}placeholder_header inputSchema/properties/secret/description: "secret"',
        'credential in {p}placeholder_url description: "secret"',
        'credential in {p}placeholder_url inputSchema/description: "secret"',
        'credential in {p}placeholder_url inputSchema/properties/secret: "secret"',
        'credential in {p}placeholder_url inputSchema/properties/secret/description: "secret"',
        'credential in {p}search_ambient description: "credentials"',
        'credential in {p}sign_in description: "credentials"',
        'credential in {p}sign_in inputSchema/description: "Credentials"',
        'credential in {p}sign_in inputSchema/properties/password: "password"',
        'credential in {p}sign_in inputSchema/properties/password/description: "password"',
    ],
}


class Deployment:
    """A config directory with a stockade.toml and one manifest per tool."""

    def __init__(self, directory: Path):
        self.dir = directory
        self.manifests: list[str] = []
        self.server: dict = {"cache_dir": str(ROOT / ".stockade" / "test-cache")}
        self.stdio: dict = {}
        self.vault: dict = {}
        self.http: dict = {}
        self.auth: dict = {}
        self.audit: dict = {}
        self.admin: dict = {}
        self.alerts: dict = {}
        self.lock: dict = {}
        self.control: dict = {}
        self.approval: dict = {}

    def add_tool(self, name: str, component: str, *, sha: str | None = None, **tables) -> Path:
        """Writes `<name>.toml` for component `component` (a wasm stem).

        `tables` maps table names (limits, fs, egress, access) to dicts; the
        [tool] table may be extended through `tool={...}`.
        """
        path = wasm(component)
        tool = {"name": name, "component": str(path), "sha256": sha or sha256(path)}
        tool.update(tables.pop("tool", {}))
        if component in LINT_ACKNOWLEDGED and "lint" not in tables:
            prefix = tool.get("prefix", "")
            tables["lint"] = {
                "acknowledge": [key.replace("{p}", prefix) for key in LINT_ACKNOWLEDGED[component]]
            }
        manifest = self.dir / f"{name}.toml"
        manifest.write_text(toml_tables({"tool": tool, **tables}))
        self.manifests.append(manifest.name)
        return manifest

    def write(self) -> Path:
        config = self.dir / "stockade.toml"
        text = f"tools = {toml_value(self.manifests)}\n\n"
        tables = {"server": self.server}
        if self.stdio:
            tables["stdio"] = self.stdio
        if self.vault:
            tables["vault"] = self.vault
        if self.http:
            tables["http"] = self.http
        if self.auth:
            tables["auth"] = self.auth
        if self.audit:
            tables["audit"] = self.audit
        if self.admin:
            tables["admin"] = self.admin
        if self.alerts:
            tables["alerts"] = self.alerts
        if self.lock:
            tables["lock"] = self.lock
        if self.control:
            tables["control"] = self.control
        if self.approval:
            tables["approval"] = self.approval
        config.write_text(text + toml_tables(tables))
        return config

    def params(self, extra_env: dict | None = None) -> StdioServerParameters:
        env = {"PATH": os.environ.get("PATH", ""), "STOCKADE_LOG": "info"}
        env.update(extra_env or {})
        return StdioServerParameters(
            command=str(BINARY),
            args=["serve", "--config", str(self.write())],
            env=env,
        )

    @asynccontextmanager
    async def client(self, mode: str = "legacy", **client_args):
        """An MCP client connected to a fresh `stockade serve` over stdio."""
        async with Client(self.params(), mode=mode, **client_args) as c:
            yield c

    def check(self) -> subprocess.CompletedProcess:
        """Runs `stockade check` on this deployment."""
        return subprocess.run(
            [str(BINARY), "check", "--config", str(self.write())],
            capture_output=True,
            text=True,
            timeout=120,
        )


@pytest.fixture
def deployment(tmp_path: Path) -> Deployment:
    return Deployment(tmp_path)


@pytest.fixture
def examples_deployment(tmp_path: Path) -> Deployment:
    """The three example tools with the demo's grants, in a scratch directory."""
    d = Deployment(tmp_path)
    data = tmp_path / "data"
    (data / "notes").mkdir(parents=True)
    (data / "README.txt").write_text("sample data\n")
    (data / "notes" / "plan.txt").write_text("alpha\nneedle in a haystack\nomega\n")
    work = tmp_path / "work"
    work.mkdir()
    d.add_tool("text-kit", "text_kit")
    d.add_tool(
        "files",
        "files",
        fs={"/data": {"host": str(data), "mode": "ro"}, "/scratch": {"host": str(work), "mode": "rw"}},
    )
    d.add_tool("fetch", "fetch", egress={"allow": []})
    return d


def run_admin(deployment: "Deployment", *args: str, user: int | None = None) -> subprocess.CompletedProcess:
    """`stockade admin --config ... ARGS`, as uid `user` when given."""
    command = [str(BINARY), "admin", "--config", str(deployment.write()), *args]
    if user is not None:
        command = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


async def call_while(client, name: str, arguments: dict, meanwhile):
    """Calls the tool `name` in the background, awaits `meanwhile()` while
    the call runs (or waits), and returns the call's result."""
    outcome = {}

    async def call():
        outcome["result"] = await client.call_tool(name, arguments)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(call)
        await meanwhile()
    return outcome["result"]


def text_of(result) -> str:
    return "\n".join(c.text for c in result.content if getattr(c, "type", "") == "text")


def pytest_configure(config):
    if not BINARY.exists():
        print(f"{BINARY} is missing: run `cargo xtask build` first", file=sys.stderr)


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def http_server():
    """A local HTTP server on 127.0.0.1 (free port) for allowlisted targets.

    Routes: /hello -> "hello from upstream", /echo-headers -> the request
    headers as JSON, /redirect?to=URL -> 302 to URL, /big?n=N -> N bytes.
    """
    import http.server
    import threading
    from urllib.parse import parse_qs, urlparse

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            url = urlparse(self.path)
            query = parse_qs(url.query)
            self.server.seen.append({"path": self.path, "headers": dict(self.headers)})
            if url.path == "/hello":
                self.reply(200, b"hello from upstream")
            elif url.path == "/echo-headers":
                self.reply(200, json.dumps(dict(self.headers)).encode())
            elif url.path == "/redirect":
                self.send_response(302)
                self.send_header("Location", query["to"][0])
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif url.path == "/big":
                self.reply(200, b"x" * int(query["n"][0]))
            else:
                self.reply(404, b"not found")

        def reply(self, status, body):
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield server
    server.shutdown()
    server.server_close()


# The legacy handshake, for tests that speak raw JSON-RPC lines.
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}},
}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


def tool_call(request_id: int, name: str, arguments: dict) -> dict:
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": {"name": name, "arguments": arguments}}


def raw_session(config: Path, messages: list, *, env: dict | None = None, timeout: int = 60):
    """Feeds `messages` (dicts, or raw strings sent as they are) to `stockade
    serve` on stdin, closes it, and returns (JSON replies on stdout, process)."""
    lines = [m if isinstance(m, str) else json.dumps(m) for m in messages]
    proc = subprocess.run(
        [str(BINARY), "serve", "--config", str(config)],
        input="".join(line + "\n" for line in lines),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    return [json.loads(l) for l in proc.stdout.splitlines() if l.strip()], proc


class RawSession:
    """`stockade serve` driven with raw JSON-RPC lines, so the test knows
    the server's pid (for its memory) and owns its lifetime."""

    def __init__(self, deployment, env: dict | None = None):
        self.stderr = open(deployment.dir / "stderr.log", "w")
        self.proc = subprocess.Popen(
            [str(BINARY), "serve", "--config", str(deployment.write())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            env={"PATH": os.environ.get("PATH", ""), "STOCKADE_LOG": "warn", **(env or {})},
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.next_id = 0
        init = self.request(
            "initialize",
            {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}},
        )
        assert init["result"]["serverInfo"]["name"] == "stockade"
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line)

    def send(self, message: dict) -> None:
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()

    def request(self, method: str, params: dict, timeout: float = 60) -> dict:
        self.next_id += 1
        self.send({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params})
        deadline = time.monotonic() + timeout
        while True:
            reply = json.loads(self.lines.get(timeout=max(0.1, deadline - time.monotonic())))
            if reply.get("id") == self.next_id:
                return reply

    def call(self, name: str, arguments: dict) -> tuple[bool, str]:
        """(is_error, text) of one tools/call."""
        result = self.request("tools/call", {"name": name, "arguments": arguments})["result"]
        text = "\n".join(c.get("text", "") for c in result["content"])
        return bool(result.get("isError")), text

    def rss_kib(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=15)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.stderr.close()
