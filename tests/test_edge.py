"""The MCP edge over raw stdio: whatever a client sends, every request with
an id gets exactly one answer with that id and the right code, stray input
is survived, the server keeps serving, stdout stays pure JSON-RPC, a client
that stops reading cannot grow the server's memory, and shutdown lets calls
in flight finish (or cancels them after the grace period) without losing
their audit records."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import threading
import time

import pytest

from conftest import BINARY, INITIALIZE, INITIALIZED, tool_call

CPU = "hostile_resource_cpu"


class Server:
    """`stockade serve` with raw pipes; stdout is read only when asked."""

    def __init__(self, deployment, log="info"):
        self.stderr_path = deployment.dir / "stderr.log"
        self.stderr = open(self.stderr_path, "w")
        self.proc = subprocess.Popen(
            [str(BINARY), "serve", "--config", str(deployment.write())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            env={"PATH": os.environ.get("PATH", ""), "STOCKADE_LOG": log},
        )
        self.pending = b""

    def send_bytes(self, data: bytes) -> None:
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def send(self, message) -> None:
        self.send_bytes((json.dumps(message) if not isinstance(message, str) else message).encode() + b"\n")

    def read(self, timeout: float = 60) -> dict:
        """The next stdout line as JSON; fails (never hangs) after `timeout`."""
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.pending:
            ready, _, _ = select.select([fd], [], [], timeout)
            assert ready, f"no output from the server within {timeout} s"
            chunk = os.read(fd, 1 << 16)
            assert chunk, "the server closed stdout"
            self.pending += chunk
        line, self.pending = self.pending.split(b"\n", 1)
        return json.loads(line)

    def expect(self, id_) -> dict:
        """Reads until the answer to `id_`; every line must be JSON-RPC."""
        while True:
            message = self.read()
            assert message.get("jsonrpc") == "2.0", message
            if message.get("id") == id_:
                return message

    def start(self) -> None:
        self.send(INITIALIZE)
        assert self.expect(1)["result"]["serverInfo"]["name"] == "stockade"
        self.send(INITIALIZED)

    def alive(self, id_=999) -> None:
        self.send({"jsonrpc": "2.0", "id": id_, "method": "tools/list", "params": {}})
        assert "tools" in self.expect(id_)["result"]

    def log(self) -> str:
        return self.stderr_path.read_text()

    def close(self) -> int:
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        try:
            return self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.stderr.close()


@pytest.fixture
def server(deployment):
    deployment.add_tool("cpu", CPU, limits={"timeout": "1s", "fuel": 10**12})
    s = Server(deployment)
    yield s
    s.close()


def test_stray_input_before_the_first_request_is_survived(server):
    server.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}})
    server.send({"jsonrpc": "2.0", "id": 77, "result": {}})
    server.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
    server.start()
    server.alive()
    assert server.close() == 0
    assert "ignored" in server.log()


BROKEN = [
    # (line, id expected in the answer, code, words in the message)
    (b'{"jsonrpc":"2.0","id":41,"method":"tools/call","params":{"name":"ok",', 41, -32700, "not valid JSON"),
    (b'{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"ok","arguments":{"t":"\\ud83d"}}}', 42, -32700, "surrogate"),
    (b'{"jsonrpc":"2.0","id":43,"method":"tools/call","params":{"name":"ok","arguments":{"t":"\xff\xfe"}}}', 43, -32700, "UTF-8"),
    (b'{"jsonrpc":"2.0","id":44,"method":"tools/call","params":{"name":"ok","arguments":' + b"[" * 200 + b"]" * 200 + b"}}", 44, -32700, "deeper than 64"),
    (b'{"jsonrpc":"2.0","id":45,"method":"tools/call","params":{"name":"ok","arguments":"x"}}', 45, -32602, "params.arguments"),
    (b'{"jsonrpc":"2.0","id":46,"method":"tools/call","params":{"arguments":{}}}', 46, -32602, "params.name"),
    (b'{"jsonrpc":"2.0","id":47,"method":"tools/call"}', 47, -32602, "needs `params`"),
    (b'{"jsonrpc":"2.0","id":"s48","method":"tools/call","params":{"name":7}}', "s48", -32602, "params.name"),
    (b'{"jsonrpc":"1.0","id":49,"method":"tools/list"}', 49, -32600, "jsonrpc"),
    (b'[{"jsonrpc":"2.0","id":50,"method":"ping"}]', None, -32600, "batches"),
    (b"42", None, -32600, "JSON object"),
    (b"{not json at all", None, -32700, "not valid JSON"),
]


def test_every_broken_request_gets_one_answer_with_its_id(server):
    server.start()
    for line, id_, code, words in BROKEN:
        server.send_bytes(line + b"\n")
        answer = server.read()
        assert answer["id"] == id_, (line[:80], answer)
        assert answer["error"]["code"] == code, (line[:80], answer)
        assert words in answer["error"]["message"], (line[:80], answer)
    server.alive()
    assert server.close() == 0


def test_an_over_long_line_is_answered_not_buffered(deployment):
    deployment.add_tool("cpu", CPU)
    deployment.stdio = {"max_message": "64KiB"}
    server = Server(deployment)
    try:
        server.start()
        huge = {"jsonrpc": "2.0", "id": 60, "method": "tools/call", "params": {"name": "ok", "arguments": {"x": "y" * (4 << 20)}}}
        server.send(huge)
        answer = server.read()
        assert answer["id"] == 60 and answer["error"]["code"] == -32600, answer
        assert "stdio.max_message (65536 bytes)" in answer["error"]["message"]
        server.alive()
    finally:
        assert server.close() == 0


def test_a_second_initialize_and_a_duplicate_id_in_flight_are_refused(server):
    server.start()
    server.send(INITIALIZE)
    again = server.expect(1)
    assert again["error"]["code"] == -32600 and "already initialized" in again["error"]["message"]
    # The spin call holds id 70 for a second; a second request with id 70
    # is refused at once, and the first still gets its own answer.
    server.send(tool_call(70, "spin", {}))
    time.sleep(0.2)
    server.send(tool_call(70, "ok", {}))
    first = server.read()
    assert first["id"] == 70 and first["error"]["code"] == -32600, first
    assert "already in flight" in first["error"]["message"]
    second = server.read()
    assert second["id"] == 70 and second["result"]["isError"], second
    assert "limit exceeded: timeout" in second["result"]["content"][0]["text"]
    server.alive()
    assert server.close() == 0


def test_calls_on_the_hot_path_keep_rmcps_per_request_checks(server):
    # After the handshake, tools/call is run by the edge itself; a call that
    # names its own protocol version in `_meta` is still checked as rmcp's
    # loop checks it, and refused with rmcp's codes.
    server.start()
    key = "io.modelcontextprotocol/protocolVersion"
    unsupported = tool_call(91, "ok", {})
    unsupported["params"]["_meta"] = {key: "1999-01-01"}
    server.send(unsupported)
    answer = server.expect(91)
    assert answer["error"]["message"] == "Unsupported protocol version", answer
    assert answer["error"]["data"]["requested"] == "1999-01-01"
    partial = tool_call(92, "ok", {})
    partial["params"]["_meta"] = {key: "2026-07-28"}
    server.send(partial)
    answer = server.expect(92)
    assert answer["error"]["code"] == -32602, answer
    assert "io.modelcontextprotocol/clientCapabilities" in answer["error"]["message"]
    # Neither reached the tool, and the session goes on.
    assert '"tool":"ok"' not in server.log()
    server.send(tool_call(93, "ok", {}))
    assert "result" in server.expect(93)
    assert server.close() == 0


def test_a_2026_session_without_handshake_is_served_and_checked_on_every_call(server):
    # No initialize: the first call opens a 2026-07-28 session through rmcp;
    # the edge runs the later ones itself, with the same per-request checks.
    meta = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "0"},
    }

    def call(request_id, meta):
        message = tool_call(request_id, "ok", {})
        message["params"]["_meta"] = meta
        server.send(message)
        return server.expect(request_id)

    for request_id in (101, 102, 103):
        assert "result" in call(request_id, meta), request_id
    partial = call(104, {"io.modelcontextprotocol/protocolVersion": "2026-07-28"})
    assert partial["error"]["code"] == -32602, partial
    assert "io.modelcontextprotocol/clientCapabilities" in partial["error"]["message"]
    bare = call(105, {})
    assert bare["error"]["code"] == -32602, bare
    assert "io.modelcontextprotocol/protocolVersion" in bare["error"]["message"]
    assert "result" in call(106, meta)
    assert server.log().count('"event":"call_finished"') == 4
    assert server.close() == 0


def test_an_answer_is_not_held_back_by_a_line_the_client_has_not_ended(server):
    # Answers to calls that end on the reader thread are written together
    # while more input waits; a line begun but not ended is not more input.
    server.start()
    first = json.dumps(tool_call(110, "ok", {}))
    second = json.dumps(tool_call(111, "ok", {}))
    server.send_bytes((first + "\n" + second[:20]).encode())
    answer = server.read(timeout=10)
    assert answer["id"] == 110 and "result" in answer, answer
    server.send_bytes((second[20:] + "\n").encode())
    assert "result" in server.expect(111)
    assert server.close() == 0


def test_sigterm_lets_a_call_in_flight_finish_and_exits_zero(server):
    server.start()
    server.send(tool_call(80, "spin", {}))
    time.sleep(0.2)
    server.proc.send_signal(signal.SIGTERM)
    answer = server.expect(80)
    assert "limit exceeded: timeout (1000 ms)" in answer["result"]["content"][0]["text"]
    assert server.proc.wait(timeout=30) == 0
    log = server.log()
    assert "SIGTERM" in log
    assert '"tool":"spin"' in log and '"outcome":"limited","error_class":"limit"' in log


def test_past_the_grace_period_calls_are_cancelled_and_audited(deployment):
    deployment.add_tool("cpu", CPU, limits={"timeout": "30s", "fuel": 10**12})
    deployment.server["shutdown_grace"] = "300ms"
    server = Server(deployment)
    server.start()
    server.send(tool_call(81, "spin", {}))
    time.sleep(0.2)
    started = time.monotonic()
    server.proc.send_signal(signal.SIGINT)
    code = server.proc.wait(timeout=30)
    took = time.monotonic() - started
    server.close()
    assert code == 0
    log = server.log()
    assert "SIGINT" in log and "cancelled" in log
    assert '"tool":"spin"' in log and '"outcome":"failed","error_class":"cancelled"' in log
    assert took < 10, took


def test_end_of_input_waits_for_calls_in_flight(server):
    server.start()
    server.send(tool_call(82, "spin", {}))
    time.sleep(0.1)
    server.proc.stdin.close()
    answer = server.expect(82)
    assert "limit exceeded: timeout" in answer["result"]["content"][0]["text"]
    assert server.proc.wait(timeout=30) == 0


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_client_that_stops_reading_cannot_grow_the_server(deployment):
    deployment.add_tool("cpu", CPU)
    deployment.stdio = {"max_in_flight": 16}
    server = Server(deployment, log="warn")
    try:
        server.start()
        server.alive(5)
        before = rss_kib(server.proc.pid)
        requests = 20_000
        payload = b"".join(
            json.dumps({"jsonrpc": "2.0", "id": 1000 + i, "method": "tools/list", "params": {}}).encode() + b"\n"
            for i in range(requests)
        )
        writer = threading.Thread(target=lambda: server.send_bytes(payload), daemon=True)
        writer.start()
        time.sleep(3)
        # Nobody reads stdout: the server has stopped reading stdin, so the
        # writer is still blocked and the server's memory has not grown.
        assert writer.is_alive()
        during = rss_kib(server.proc.pid)
        assert during - before < 20_000, (before, during)
        # Reading again: every request gets its answer.
        seen = 0
        while seen < requests:
            message = server.read()
            if isinstance(message.get("id"), int) and message["id"] >= 1000:
                assert "tools" in message["result"]
                seen += 1
        writer.join(timeout=30)
        server.alive()
    finally:
        assert server.close() == 0


def test_the_audit_record_and_the_client_share_the_correlation_id(server):
    server.start()
    server.send(tool_call("req-7", "ok", {}))
    answer = server.expect("req-7")
    correlation = answer["result"]["_meta"]["io.stockade/correlation"]
    server.send(tool_call(8, "no-such-tool", {}))
    unknown = server.expect(8)
    assert unknown["error"]["code"] == -32602
    refused_correlation = unknown["error"]["data"]["io.stockade/correlation"]
    assert server.close() == 0
    audit = [json.loads(line.split("stockade::audit: ", 1)[1]) for line in server.log().splitlines() if "stockade::audit: " in line]
    (started, call) = [r for r in audit if r.get("correlation") == correlation]
    assert (started["event"], call["event"]) == ("call_started", "call_finished")
    assert call["request_id"] == "req-7" and call["protocol"] == "2025-11-25" and call["outcome"] == "succeeded"
    (denied,) = [r for r in audit if r.get("correlation") == refused_correlation]
    assert denied["request_id"] == "8" and denied["outcome"] == "denied" and denied["error_class"] == "unknown_tool"
    assert call["session"] and call["session"] == denied["session"]


@pytest.mark.anyio
async def test_every_request_a_tool_sends_carries_the_call_depth(deployment, http_server):
    deployment.add_tool("fetch", "fetch", egress={"allow": [{"url": http_server.url, "private": True}]})
    async with deployment.client() as client:
        result = await client.call_tool("fetch", {"url": f"{http_server.url}/echo-headers"})
    assert not result.is_error
    headers = {k.lower(): v for k, v in json.loads(result.content[0].text).items()}
    # A local client's call is depth 0; what its tool sends is depth 1.
    assert headers["stockade-call-depth"] == "1"


def test_max_call_depth_is_validated(deployment):
    deployment.add_tool("cpu", CPU)
    deployment.server["max_call_depth"] = 0
    checked = deployment.check()
    assert checked.returncode != 0
    assert "server.max_call_depth" in checked.stderr + checked.stdout


def mutations(seed: int, count: int):
    """Seeded mutations of a valid tools/call line: cuts, flipped and
    inserted bytes, repeated brackets, stray quotes and escapes."""
    import random

    rng = random.Random(seed)
    for n in range(count):
        # Each line's own id, so answers cannot be confused between lines.
        base = json.dumps(tool_call(100_000 + n, "ok", {"text": "héllo", "n": [1, 2, {"k": None}]})).encode()
        line = bytearray(base)
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(line))
            action = rng.randrange(6)
            if action == 0:
                del line[at:]
                line = line or bytearray(b"{")
            elif action == 1:
                line[at] = rng.randrange(256)
            elif action == 2:
                line[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
            elif action == 3:
                line[at:at] = b"[" * rng.randint(1, 300)
            elif action == 4:
                line[at:at] = rng.choice([b'"', b"\\", b"\\ud800", b"\\u", b"}", b","])
            else:
                line[at:at] = b'"id":' + str(rng.randint(-5, 5)).encode() + b","
        yield bytes(line.replace(b"\n", b" "))


def request_id(line: bytes):
    """The id of a line that is a well-formed request, else None."""
    try:
        message = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(message, dict) or not isinstance(message.get("method"), str):
        return None
    id_ = message.get("id")
    if isinstance(id_, bool) or not isinstance(id_, (int, str)):
        return None
    return id_


def test_fuzzed_lines_never_go_unanswered_or_stop_the_server(server):
    server.start()
    well_formed = 0
    answered: dict = {}
    for n, line in enumerate(mutations(seed=1234, count=400)):
        server.send_bytes(line + b"\n")
        sentinel = f"sentinel-{n}"
        server.send({"jsonrpc": "2.0", "id": sentinel, "method": "ping"})
        expected = request_id(line)
        if expected is not None:
            well_formed += 1
        # Calls run concurrently with the ping: read until both answers.
        waiting = {sentinel} | ({json.dumps(expected)} if expected is not None else set())
        while waiting:
            message = server.read()
            assert message.get("jsonrpc") == "2.0", (line, message)
            assert ("result" in message) != ("error" in message), message
            key = json.dumps(message.get("id"))
            waiting.discard(message.get("id") if message.get("id") == sentinel else key)
            if message.get("id") != sentinel:
                answered[key] = answered.get(key, 0) + 1
    assert well_formed > 20
    # No line's own id was answered twice.
    assert all(count == 1 for key, count in answered.items() if key.isdigit() and int(key) >= 100_000), answered
    server.alive()
    assert server.close() == 0
