"""Hostile network corpus: tools that try to leave through every door
except the one the manifest opens, and each time a benign call right after.

Boundaries under attack: the egress allowlist (scheme, host, port), the
address check after resolution (loopback, private, link-local, metadata,
IPv4-mapped), redirects followed by the tool itself, egress size and time
budgets, and `wasi:sockets` (TCP, UDP, name lookup), which is never granted.

Tests that name a non-loopback address run `stockade serve` inside a fresh
network namespace that holds only `lo`: even a broken check cannot send a
packet off this machine there, so what is asserted is Stockade's own denial
message, not a connection failure.
"""

from __future__ import annotations

import functools
import os
import socket
import subprocess
import sys
import threading
import time
from contextlib import asynccontextmanager

import pytest
from mcp import Client, StdioServerParameters

from conftest import BINARY, ROOT, text_of

pytestmark = pytest.mark.anyio

EGRESS_TOOL = "hostile_net_egress"
SOCKETS_TOOL = "hostile_net_sockets"

# Port of the upstream started inside a fresh network namespace (nothing
# else listens there, so any port is free).
NETNS_UPSTREAM_PORT = 8080

# A tiny HTTP upstream for inside the namespace: /hello and /redirect?to=.
# It binds, forks (so the shell goes on only once it listens) and exits when
# the process it was started for (argv[2], the future stockade) is gone.
NETNS_UPSTREAM = r"""
import http.server, os, sys, threading, time
from urllib.parse import parse_qs, urlparse

class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass
    def do_GET(self):
        url = urlparse(self.path)
        if url.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", parse_qs(url.query)["to"][0])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = b"hello from the namespace" if url.path == "/hello" else b"not found"
        self.send_response(200 if url.path == "/hello" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

server = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
if os.fork():
    os._exit(0)
watched = int(sys.argv[2])

def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False

def watch():
    while alive(watched):
        time.sleep(0.2)
    os._exit(0)

threading.Thread(target=watch, daemon=True).start()
server.serve_forever()
"""


def server_env() -> dict:
    return {"PATH": os.environ.get("PATH", ""), "STOCKADE_LOG": "info"}


@functools.cache
def unshare_prefix() -> list[str] | None:
    """How to enter a fresh network namespace here: as root, or through a
    user namespace; None when neither works."""
    for prefix in (["unshare", "--net"], ["unshare", "--map-root-user", "--net"]):
        try:
            probe = subprocess.run([*prefix, "ip", "link", "set", "lo", "up"], capture_output=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0:
            return prefix
    return None


def netns_params(deployment, upstream: bool = False) -> StdioServerParameters:
    """`stockade serve` inside a new network namespace with only `lo` up,
    optionally with NETNS_UPSTREAM listening on 127.0.0.1 in there. Skips
    the test when no namespace can be made: never run these outside one."""
    prefix = unshare_prefix()
    if prefix is None:
        message = "cannot create a network namespace (unshare --net) on this machine"
        if os.environ.get("CI"):
            pytest.fail(message + ": CI must run these attacks")
        pytest.skip(message)
    script = "ip link set lo up"
    if upstream:
        script += f' && "$2" -c "$3" {NETNS_UPSTREAM_PORT} $$'
    script += ' && exec "$0" serve --config "$1"'
    return StdioServerParameters(
        command=prefix[0],
        args=[*prefix[1:], "sh", "-c", script, str(BINARY), str(deployment.write()), sys.executable, NETNS_UPSTREAM],
        env=server_env(),
    )


@asynccontextmanager
async def netns_client(deployment, upstream: bool = False):
    async with Client(netns_params(deployment, upstream), mode="legacy") as client:
        yield client


def assert_no_host_paths(text: str, deployment) -> None:
    for path in (str(ROOT), str(deployment.dir), str(BINARY)):
        assert path not in text, f"host path {path} leaked into {text!r}"


def add_benign(deployment, url: str) -> None:
    """The same component under prefix `ok.`, allowed to reach `url`."""
    deployment.add_tool(
        "benign",
        EGRESS_TOOL,
        tool={"prefix": "ok."},
        egress={"allow": [{"url": url, "private": True}]},
    )


async def assert_benign(client, url: str, expected: str = "hello from upstream") -> None:
    after = await client.call_tool("ok.get", {"url": f"{url}/hello"})
    assert not after.is_error, text_of(after)
    assert text_of(after) == f"200 {expected}"


def only_hello(http_server) -> list[str]:
    return [seen["path"] for seen in http_server.seen]


# --- the allowlist -------------------------------------------------------


async def test_a_host_not_on_the_allowlist_is_denied(deployment, http_server):
    port = http_server.server_address[1]
    deployment.add_tool("egress", EGRESS_TOOL, egress={"allow": [{"url": http_server.url, "private": True}]})
    async with deployment.client() as client:
        other_host = await client.call_tool("get", {"url": f"http://127.0.0.2:{port}/hello"})
        other_port = await client.call_tool("get", {"url": f"http://127.0.0.1:{port + 1}/hello"})
        after = await client.call_tool("get", {"url": f"{http_server.url}/hello"})
    assert other_host.is_error and other_port.is_error
    assert f"egress denied: http://127.0.0.2:{port} is not on the allowlist" in text_of(other_host)
    assert f"egress denied: http://127.0.0.1:{port + 1} is not on the allowlist" in text_of(other_port)
    assert "guest saw denied" in text_of(other_host)
    assert not after.is_error and text_of(after) == "200 hello from upstream"
    assert only_hello(http_server) == ["/hello"]


async def test_the_scheme_must_match_the_entry(deployment, http_server):
    port = http_server.server_address[1]
    deployment.add_tool(
        "egress", EGRESS_TOOL, egress={"allow": [{"url": f"https://127.0.0.1:{port}", "private": True}]}
    )
    add_benign(deployment, http_server.url)
    async with deployment.client() as client:
        plain = await client.call_tool("get", {"url": f"http://127.0.0.1:{port}/hello"})
        await assert_benign(client, http_server.url)
    assert plain.is_error
    assert f"egress denied: http://127.0.0.1:{port} is not on the allowlist" in text_of(plain)
    # Only the benign call reached the server.
    assert only_hello(http_server) == ["/hello"]


@pytest.mark.parametrize("host", ["127.0.0.1", "[::1]", "[::ffff:127.0.0.1]"])
async def test_loopback_literals_listed_without_private_are_denied(deployment, http_server, host):
    port = http_server.server_address[1]
    deployment.add_tool("egress", EGRESS_TOOL, egress={"allow": [f"http://{host}:{port}"]})
    add_benign(deployment, http_server.url)
    async with deployment.client() as client:
        attack = await client.call_tool("get", {"url": f"http://{host}:{port}/hello"})
        await assert_benign(client, http_server.url)
    assert attack.is_error
    assert "is a loopback address" in text_of(attack), text_of(attack)
    assert "guest saw denied" in text_of(attack)
    assert only_hello(http_server) == ["/hello"]


async def test_a_name_that_resolves_to_loopback_is_denied(deployment, http_server):
    port = http_server.server_address[1]
    deployment.add_tool("egress", EGRESS_TOOL, egress={"allow": [f"http://localhost:{port}"]})
    add_benign(deployment, http_server.url)
    async with deployment.client() as client:
        attack = await client.call_tool("get", {"url": f"http://localhost:{port}/hello"})
        await assert_benign(client, http_server.url)
    assert attack.is_error
    assert "egress denied: localhost resolves to" in text_of(attack)
    assert "which is a loopback address" in text_of(attack)
    assert only_hello(http_server) == ["/hello"]


# --- non-loopback destinations, inside a fresh network namespace ---------

NON_PUBLIC = [
    ("http://169.254.169.254", "/latest/meta-data/", "169.254.169.254 is a cloud metadata address"),
    ("http://169.254.1.1", "/", "169.254.1.1 is a link-local address"),
    ("http://10.0.0.1", "/", "10.0.0.1 is a private address"),
    ("http://192.168.0.1:8080", "/", "192.168.0.1 is a private address"),
    ("http://[fd00:ec2::254]", "/", "fd00:ec2::254 is a cloud metadata address"),
    ("http://[::ffff:10.0.0.1]", "/", "::ffff:10.0.0.1 is a private address"),
    ("http://100.64.0.1", "/", "100.64.0.1 is a carrier-grade NAT address"),
]


async def test_non_public_addresses_listed_without_private_are_denied(deployment):
    upstream = f"http://127.0.0.1:{NETNS_UPSTREAM_PORT}"
    deployment.add_tool(
        "egress", EGRESS_TOOL, egress={"allow": [entry for entry, _, _ in NON_PUBLIC], "connect_timeout": "1s"}
    )
    add_benign(deployment, upstream)
    async with netns_client(deployment, upstream=True) as client:
        attacks = [await client.call_tool("get", {"url": entry + path}) for entry, path, _ in NON_PUBLIC]
        unlisted = await client.call_tool("get", {"url": "https://example.com/"})
        await assert_benign(client, upstream, "hello from the namespace")
    for (entry, _, denial), result in zip(NON_PUBLIC, attacks):
        assert result.is_error, entry
        assert f"egress denied: {denial}" in text_of(result), text_of(result)
        assert_no_host_paths(text_of(result), deployment)
    assert "egress denied: https://example.com:443 is not on the allowlist" in text_of(unlisted)


# --- redirects -----------------------------------------------------------


async def test_a_redirect_to_a_denied_destination_is_checked_again(deployment, http_server):
    port = http_server.server_address[1]
    deployment.add_tool(
        "egress",
        EGRESS_TOOL,
        egress={"allow": [{"url": http_server.url, "private": True}, f"http://localhost:{port}"]},
    )
    hop = f"{http_server.url}/redirect?to="
    async with deployment.client() as client:
        unlisted = await client.call_tool("follow", {"url": hop + f"http://127.0.0.2:{port}/hello"})
        by_name = await client.call_tool("follow", {"url": hop + f"http://localhost:{port}/hello"})
        allowed = await client.call_tool("follow", {"url": hop + f"{http_server.url}/hello"})
    assert unlisted.is_error and by_name.is_error
    assert "after 1 hop(s)" in text_of(unlisted)
    assert f"egress denied: http://127.0.0.2:{port} is not on the allowlist" in text_of(unlisted)
    assert "egress denied: localhost resolves to" in text_of(by_name)
    assert "loopback address" in text_of(by_name)
    # The benign chain is followed to the end; the denied hops never arrived.
    assert not allowed.is_error and text_of(allowed).endswith("hello from upstream")
    assert only_hello(http_server).count("/hello") == 1


async def test_a_redirect_to_cloud_metadata_is_denied(deployment):
    upstream = f"http://127.0.0.1:{NETNS_UPSTREAM_PORT}"
    deployment.add_tool(
        "egress",
        EGRESS_TOOL,
        egress={"allow": [{"url": upstream, "private": True}, "http://169.254.169.254"]},
    )
    async with netns_client(deployment, upstream=True) as client:
        attack = await client.call_tool(
            "follow", {"url": f"{upstream}/redirect?to=http://169.254.169.254/latest/meta-data/iam/"}
        )
        after = await client.call_tool("get", {"url": f"{upstream}/hello"})
    assert attack.is_error
    assert "after 1 hop(s), http://169.254.169.254/latest/meta-data/iam/" in text_of(attack)
    assert "egress denied: 169.254.169.254 is a cloud metadata address" in text_of(attack)
    assert not after.is_error and text_of(after) == "200 hello from the namespace"


# --- raw sockets ---------------------------------------------------------


async def test_sockets_outside_wasi_http_are_denied(deployment, http_server):
    port = http_server.server_address[1]
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", port))
    udp.settimeout(0.3)
    deployment.add_tool("sockets", SOCKETS_TOOL, egress={"allow": [{"url": http_server.url, "private": True}]})
    try:
        async with deployment.client() as client:
            report = await client.call_tool("sockets", {"target": f"127.0.0.1:{port}", "name": "localhost"})
            after = await client.call_tool("http_get", {"url": f"{http_server.url}/hello"})
        with pytest.raises(TimeoutError):
            udp.recvfrom(1024)
    finally:
        udp.close()
    assert not report.is_error, text_of(report)
    outcomes = report.structured_content
    assert sorted(outcomes) == [
        "std_name_lookup",
        "std_tcp_connect",
        "std_udp_send",
        "wasi_name_lookup",
        "wasi_tcp_connect",
        "wasi_udp_send",
    ]
    for attempt, outcome in outcomes.items():
        assert outcome.startswith("error: "), f"{attempt}: {outcome}"
    # What the guest sees: wasmtime-wasi refuses TCP and UDP as access
    # denied and name lookup as a permanent resolver failure; std reports
    # the same through its own error types.
    assert 'name: "access-denied"' in outcomes["wasi_tcp_connect"]
    assert 'name: "access-denied"' in outcomes["wasi_udp_send"]
    assert 'name: "permanent-resolver-failure"' in outcomes["wasi_name_lookup"]
    assert "kind: PermissionDenied" in outcomes["std_tcp_connect"]
    assert "kind: PermissionDenied" in outcomes["std_udp_send"]
    assert "failed to lookup address information" in outcomes["std_name_lookup"]
    assert only_hello(http_server) == ["/hello"]
    assert not after.is_error and text_of(after) == "hello from upstream"


@pytest.mark.parametrize(
    "tables",
    [
        {"sockets": {"tcp": True}},
        {"egress": {"allow": [], "tcp": True}},
        {"egress": {"allow": [], "udp": True}},
        {"egress": {"allow": [], "name_lookup": True}},
    ],
    ids=["sockets-table", "egress.tcp", "egress.udp", "egress.name_lookup"],
)
def test_no_manifest_key_enables_sockets(deployment, tables):
    deployment.add_tool("sockets", SOCKETS_TOOL, **tables)
    result = deployment.check()
    assert result.returncode != 0
    assert "sockets.toml" in result.stdout
    key = "sockets" if "sockets" in tables else next(k for k in tables["egress"] if k != "allow")
    assert f"unknown field `{key}`" in result.stdout, result.stdout


# --- egress budgets ------------------------------------------------------


async def test_a_response_above_max_response_fails(deployment, http_server):
    deployment.add_tool(
        "egress",
        EGRESS_TOOL,
        egress={"allow": [{"url": http_server.url, "private": True}], "max_response": "1KiB"},
    )
    async with deployment.client() as client:
        big = await client.call_tool("get", {"url": f"{http_server.url}/big?n=100000"})
        small = await client.call_tool("get", {"url": f"{http_server.url}/big?n=1000"})
    assert big.is_error
    assert "egress.max_response" in text_of(big) and "1024 bytes" in text_of(big), text_of(big)
    assert not small.is_error and text_of(small) == "200 " + "x" * 1000


async def test_a_request_body_above_max_request_fails_before_anything_is_sent(deployment, http_server):
    deployment.add_tool(
        "thief",
        "hostile_secret_thief",
        egress={"allow": [{"url": http_server.url, "private": True}], "max_request": "1KiB"},
    )
    async with deployment.client() as client:
        big = await client.call_tool(
            "request", {"url": f"{http_server.url}/upload", "method": "POST", "body": "y" * 2048, "xor": 0}
        )
        small = await client.call_tool(
            "request", {"url": f"{http_server.url}/upload", "method": "POST", "body": "y" * 100, "xor": 0}
        )
    assert big.is_error
    assert "egress.max_request" in text_of(big) and "1024 bytes" in text_of(big), text_of(big)
    assert not small.is_error, text_of(small)
    # The small one was sent (the server answers 501: it has no POST route).
    assert bytes.fromhex(text_of(small)).startswith(b"status 501")


class SilentServer:
    """Accepts connections and then says nothing (or only a response head
    and the first bytes of a body, with `stall_body`)."""

    def __init__(self, stall_body: bool):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.stall_body = stall_body
        self.connections: list[socket.socket] = []
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections.append(conn)
            if self.stall_body:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly the first bytes")

    def close(self):
        self.sock.close()
        for conn in self.connections:
            conn.close()


@pytest.mark.parametrize("stall_body", [False, True], ids=["no-head", "stalled-body"])
async def test_a_server_that_never_answers_hits_read_timeout(deployment, http_server, stall_body):
    silent = SilentServer(stall_body)
    deployment.add_tool(
        "egress",
        EGRESS_TOOL,
        egress={"allow": [{"url": silent.url, "private": True}], "read_timeout": "1s"},
        limits={"timeout": "20s"},
    )
    add_benign(deployment, http_server.url)
    try:
        async with deployment.client() as client:
            started = time.monotonic()
            hung = await client.call_tool("get", {"url": f"{silent.url}/anything"}, read_timeout_seconds=30)
            elapsed = time.monotonic() - started
            await assert_benign(client, http_server.url)
    finally:
        silent.close()
    assert silent.connections, "the request never reached the silent server"
    assert hung.is_error
    assert "egress.read_timeout" in text_of(hung) and "1000 ms" in text_of(hung), text_of(hung)
    assert "limit exceeded: timeout" not in text_of(hung)
    # Ended by the 1 s read timeout, well before the call's own 20 s.
    assert elapsed < 15
