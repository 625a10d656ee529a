"""The soak: minutes of steady load on two servers at once, one over stdio
(eight calls pipelined, audited to signed files shipped to an OTLP
receiver) and one over Streamable HTTP (eight clients, each with its own
API key and session). Then: no unexpected error; every answered call has
both audit records, every record reached the receiver and the chain
verifies; and from the first tenth of the run to the last, p99 latency,
resident memory and open descriptors stay flat.

`STOCKADE_SOAK_SECONDS` sets the length (600 when `CI` is set, 30
otherwise); `cargo xtask soak` runs it alone for ten minutes and prints
the figures (`STOCKADE_SOAK_REPORT=FILE` also writes them as JSON)."""

from __future__ import annotations

import json
import os
import queue
import statistics
import threading
import time
from pathlib import Path

import httpx2

from conftest import Deployment, RawSession
from httpserve import INITIALIZE, MCP_HEADERS, HttpStockade, api_key, sse_json
from test_audit import audited, verify
from test_audit_shipping import OtlpReceiver, free_port, wait_until

STDIO_RATE = 250  # calls per second
HTTP_CLIENTS = 8
HTTP_RATE = 25  # calls per second, per client


class Samples:
    """Per-window latencies, and a process's memory and descriptors."""

    def __init__(self, started: float, window: float):
        self.started, self.window = started, window
        self.latencies: dict[int, list[float]] = {}
        self.lock = threading.Lock()

    def latency(self, seconds: float) -> None:
        window = int((time.monotonic() - self.started) / self.window)
        with self.lock:
            self.latencies.setdefault(window, []).append(seconds)

    def p99(self, window: int) -> float:
        values = sorted(self.latencies[window])
        return values[int(len(values) * 0.99) - 1] if len(values) > 1 else values[0]


def process_figures(pid: int) -> tuple[int, int]:
    """(resident KiB, open descriptors) of `pid`."""
    with open(f"/proc/{pid}/status") as status:
        rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def http_deployment(tmp_path: Path) -> tuple[Deployment, list[str]]:
    directory = tmp_path / "http"
    directory.mkdir()
    deployment = Deployment(directory)
    deployment.add_tool("text-kit", "text_kit")
    keys = [api_key(f"soak-{i}") for i in range(HTTP_CLIENTS)]
    deployment.auth = {"api_keys": [entry for _, entry in keys]}
    deployment.audit = {"dir": str(directory / "audit")}
    deployment.http = {"max_sessions": 64}
    return deployment, [key for key, _ in keys]


def http_client(url: str, key: str, index: int, stop: threading.Event, samples: Samples,
                counts: dict, errors: list) -> None:
    headers = {**MCP_HEADERS, "Authorization": f"Bearer {key}"}
    with httpx2.Client(headers=headers, timeout=60) as client:
        opened = client.post(url, content=json.dumps(INITIALIZE))
        session = {"Mcp-Session-Id": opened.headers["mcp-session-id"], "MCP-Protocol-Version": "2025-11-25"}
        client.post(url, content=json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}),
                    headers=session)
        sent, started = 0, time.monotonic()
        while not stop.is_set():
            body = {"jsonrpc": "2.0", "id": sent, "method": "tools/call",
                    "params": {"name": "transform", "arguments": {"text": f"http {index} {sent}", "op": "upper"}}}
            began = time.monotonic()
            reply = sse_json(client.post(url, content=json.dumps(body), headers=session))
            samples.latency(time.monotonic() - began)
            if reply.get("result", {}).get("isError", True):
                errors.append(reply)
            counts[index] = sent = sent + 1
            ahead = sent / HTTP_RATE - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)


def test_minutes_of_load_on_stdio_and_http_stay_flat_and_lose_nothing(deployment, tmp_path):
    seconds = float(os.environ.get("STOCKADE_SOAK_SECONDS", "600" if os.environ.get("CI") else "30"))
    window = seconds / 10
    directory, public = audited(deployment, max_file_size="8MiB", checkpoint_interval="1s")
    port = free_port()
    receiver = OtlpReceiver(port, seqs_only=True)
    deployment.audit["otlp"] = {"endpoint": f"http://127.0.0.1:{port}/v1/logs"}
    http, keys = http_deployment(tmp_path)
    server = HttpStockade(http)
    session = RawSession(deployment)
    started = time.monotonic()
    stdio_samples, http_samples = Samples(started, window), Samples(started, window)
    figures: dict[str, dict[int, tuple[int, int]]] = {"stdio": {}, "http": {}}
    stop, http_counts, http_errors = threading.Event(), {}, []
    clients = [threading.Thread(target=http_client, daemon=True,
                                args=(server.url, key, i, stop, http_samples, http_counts, http_errors))
               for i, key in enumerate(keys)]
    for client in clients:
        client.start()
    answered: set[str] = set()
    sent_at: dict[int, float] = {}
    in_flight, sent, max_calls, due, measured = 0, 0, 500_000, started, 0
    try:
        # Calls are sent when due (STDIO_RATE a second, at most 8 in
        # flight) and answers read as they come, so a latency is the
        # server's, not the pacing's.
        while (now := time.monotonic()) - started < seconds and sent < max_calls:
            # Each window's figures are taken as it ends.
            if (now - started) / window >= measured + 1:
                figures["stdio"][measured] = process_figures(session.proc.pid)
                figures["http"][measured] = process_figures(server.proc.pid)
                measured += 1
            if in_flight < 8 and now >= due:
                session.send({"jsonrpc": "2.0", "id": 100_000 + sent, "method": "tools/call",
                              "params": {"name": "transform", "arguments": {"text": f"soak {sent}", "op": "upper"}}})
                sent_at[100_000 + sent] = time.monotonic()
                sent, in_flight, due = sent + 1, in_flight + 1, due + 1 / STDIO_RATE
                continue
            try:
                line = session.lines.get(timeout=max(0.0005, due - now) if in_flight < 8 else 60)
            except queue.Empty:
                continue
            reply = json.loads(line)
            in_flight -= 1
            stdio_samples.latency(time.monotonic() - sent_at.pop(reply["id"]))
            assert reply["result"]["isError"] is False, reply
            answered.add(reply["result"]["_meta"]["io.stockade/correlation"])
        stop.set()
        for client in clients:
            client.join(timeout=60)
        while in_flight:
            reply = json.loads(session.lines.get(timeout=60))
            in_flight -= 1
            answered.add(reply["result"]["_meta"]["io.stockade/correlation"])
        # Shipping keeps up, or catches up, with nothing lost.
        written = sum(sum(1 for _ in open(p)) for p in directory.glob("audit-*.jsonl"))
        wait_until(lambda: len({r["seq"] for r in receiver.records}) >= written, timeout=120,
                   what="OTLP to catch up")
    finally:
        stop.set()
        session.close()
        server.stop()
        receiver.stop()

    report = summarize(seconds, stdio_samples, http_samples, figures, sent, sum(http_counts.values()))
    print(json.dumps(report, indent=2))
    if os.environ.get("STOCKADE_SOAK_REPORT"):
        Path(os.environ["STOCKADE_SOAK_REPORT"]).write_text(json.dumps(report, indent=2))

    assert not http_errors, http_errors[:3]
    assert len(answered) == sent and sent >= STDIO_RATE * seconds * 0.5
    assert sum(http_counts.values()) >= HTTP_CLIENTS * HTTP_RATE * seconds * 0.5
    begun, finished, total = set(), set(), 0
    for path in sorted(directory.glob("audit-*.jsonl")):
        with open(path) as lines:
            for line in lines:
                record = json.loads(line)
                total += 1
                if record["event"] == "call_started":
                    begun.add(record["correlation"])
                elif record["event"] == "call_finished":
                    finished.add(record["correlation"])
    assert begun == finished == answered
    assert len(list(directory.glob("audit-*.jsonl"))) >= (2 if seconds >= 300 else 1)
    out = verify(directory, public=public)
    assert out.returncode == 0 and f"ok: {total} records" in out.stdout, out.stdout
    assert {r["seq"] for r in receiver.records} >= set(range(written))
    # Flat from the first tenth to the last: a leak or a slowdown that grows
    # with the calls served shows here. The bounds are loose on purpose
    # (this is no speed test: `cargo xtask bench` measures speed).
    for transport in ("stdio", "http"):
        first, last = report[transport]["first"], report[transport]["last"]
        assert last["p99_ms"] <= 5 * first["p99_ms"] + 50, (transport, report)
        assert last["rss_mib"] <= 1.25 * first["rss_mib"] + 32, (transport, report)
        assert last["fds"] <= first["fds"] + 16, (transport, report)


def summarize(seconds, stdio_samples, http_samples, figures, stdio_calls, http_calls) -> dict:
    """Figures of the first and last tenth of the run, per transport."""
    report = {"seconds": seconds, "stdio": {"calls": stdio_calls}, "http": {"calls": http_calls}}
    for transport, samples in (("stdio", stdio_samples), ("http", http_samples)):
        windows = sorted(w for w in samples.latencies if w in figures[transport])
        for name, window in (("first", windows[0]), ("last", windows[-1])):
            rss, fds = figures[transport][window]
            report[transport][name] = {
                "p50_ms": round(statistics.median(samples.latencies[window]) * 1000, 3),
                "p99_ms": round(samples.p99(window) * 1000, 3),
                "rss_mib": round(rss / 1024, 1),
                "fds": fds,
            }
    return report
