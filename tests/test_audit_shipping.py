"""The audit off the host and around it: syslog to a real rsyslog over TCP
and OpenTelemetry logs to an OTLP/HTTP receiver, each down then up with
nothing lost; the admin listener's metrics and readiness; anomaly alerts,
each fired by a crafted sequence and silent on normal use."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import BINARY, RawSession
from test_audit import audited, records, verify

RSYSLOGD = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, timeout: float = 20, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class Rsyslog:
    """Debian's rsyslogd receiving RFC 5424 over TCP on 127.0.0.1, writing
    MSGID, structured data and MSG of each message to a file."""

    def __init__(self, directory: Path, port: int):
        self.dir = directory
        self.dir.mkdir(exist_ok=True)
        self.port = port
        self.out = directory / "received.log"
        self.conf = directory / "rsyslog.conf"
        self.conf.write_text(f'''
global(workDirectory="{directory}" maxMessageSize="256k")
module(load="imtcp")
template(name="audit" type="string" string="%msgid% %structured-data% %msg%\\n")
ruleset(name="audit") {{ action(type="omfile" file="{self.out}" template="audit") }}
input(type="imtcp" port="{port}" address="127.0.0.1" ruleset="audit")
''')
        self.proc = None

    def start(self):
        if not Path(RSYSLOGD).exists():
            pytest.fail("rsyslogd is missing: `cargo xtask test` installs Debian's rsyslog")
        self.proc = subprocess.Popen([RSYSLOGD, "-n", "-f", str(self.conf), "-i", str(self.dir / "pid")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: self._listening(), what="rsyslogd to listen")

    def _listening(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            return True
        except OSError:
            return False

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=10)

    def received(self) -> list[tuple[int, dict]]:
        """(MSGID, record) of every message received so far."""
        if not self.out.exists():
            return []
        found = []
        for line in self.out.read_text().splitlines():
            msgid, rest = line.split(" ", 1)
            data, message = rest.split("] ", 1)
            record = json.loads(message.strip())
            assert f'seq="{record["seq"]}"' in data and f'event="{record["event"]}"' in data
            found.append((int(msgid), record))
        return found


@pytest.fixture
def rsyslog(tmp_path):
    collector = Rsyslog(tmp_path / "rsyslog", free_port())
    yield collector
    collector.stop()


def calls(deployment, count: int, admin: int | None = None) -> RawSession:
    session = RawSession(deployment)
    for i in range(count):
        assert session.call("transform", {"text": f"n{i}", "op": "upper"})[0] is False
    return session


def get_json(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_syslog_collector_down_then_up_receives_every_record_in_order(deployment, rsyslog):
    directory, public = audited(deployment)
    admin = free_port()
    deployment.audit["syslog"] = {"address": f"127.0.0.1:{rsyslog.port}"}
    deployment.admin = {"listen": f"127.0.0.1:{admin}"}
    session = calls(deployment, 10)
    try:
        # The collector is down: records wait in the audit directory.
        ready = wait_until(lambda: (r := get_json(f"http://127.0.0.1:{admin}/readyz")[1])["shipping"][0]["error"] and r,
                           what="the shipper to report the collector down")
        assert ready["ready"] and ready["audit"]["ok"]
        (shipper,) = ready["shipping"]
        assert shipper["shipper"] == "syslog" and shipper["backlog"] > 0 and "Connection refused" in shipper["error"]
        rsyslog.start()
        written = len(records(directory))
        got = wait_until(lambda: (r := rsyslog.received()) and r[-1][1]["seq"] >= written - 1 and r,
                         what="rsyslog to receive the spooled records")
        rsyslog.stop()
        # Down again: more calls; then up again.
        for i in range(5):
            assert session.call("transform", {"text": f"later {i}", "op": "upper"})[0] is False
        rsyslog.start()
        written = len(records(directory))
        got = wait_until(lambda: (r := rsyslog.received()) and r[-1][1]["seq"] >= written - 1 and r,
                         what="rsyslog to receive the records written while it was down")
    finally:
        session.close()
    local = {r["seq"]: r for r in records(directory)}
    seqs = [record["seq"] for _, record in got]
    # Every record, in order; a record sent again after a reconnect is the
    # same line under the same seq.
    assert set(range(written)) <= set(seqs)
    assert all(b >= a or got[i + 1][1] == local[b] for i, (a, b) in enumerate(zip(seqs, seqs[1:])))
    for msgid, record in got:
        assert record == local[record["seq"]] and msgid == record["seq"]
    assert verify(directory, public=public).returncode == 0


class OtlpReceiver:
    """An OTLP/HTTP logs receiver on 127.0.0.1: decodes each protobuf
    ExportLogsServiceRequest; answers 503 to the first `refuse` requests."""

    def __init__(self, port: int, refuse: int = 0, seqs_only: bool = False):
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

        self.port = port
        self.refuse = refuse
        self.records: list[dict] = []
        self.refused = 0
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.refused < receiver.refuse:
                    receiver.refused += 1
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                assert self.path == "/v1/logs" and self.headers["Content-Type"] == "application/x-protobuf"
                request = ExportLogsServiceRequest.FromString(body)
                for resource in request.resource_logs:
                    service = {a.key: a.value.string_value for a in resource.resource.attributes}["service.name"]
                    for scope in resource.scope_logs:
                        for log in scope.log_records:
                            attributes = {a.key: a.value for a in log.attributes}
                            if seqs_only:
                                receiver.records.append({"seq": attributes["stockade.audit.seq"].int_value})
                                continue
                            receiver.records.append({
                                "service": service, "scope": scope.scope.name,
                                "seq": attributes["stockade.audit.seq"].int_value,
                                "event": attributes["event.name"].string_value,
                                "severity": log.severity_text, "time": log.time_unix_nano,
                                "body": log.body.string_value,
                            })
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def test_otlp_receiver_down_then_refusing_then_up_receives_every_record(deployment):
    directory, public = audited(deployment)
    port = free_port()
    deployment.audit["otlp"] = {"endpoint": f"http://127.0.0.1:{port}/v1/logs"}
    session = calls(deployment, 8)
    receiver = None
    try:
        time.sleep(0.5)
        receiver = OtlpReceiver(port, refuse=2)
        written = len(records(directory))
        wait_until(lambda: len({r["seq"] for r in receiver.records}) >= written, what="the OTLP records")
        assert receiver.refused == 2
    finally:
        session.close()
        if receiver:
            time.sleep(0.3)
            receiver.stop()
    local = {r["seq"]: r for r in records(directory)}
    seqs = [r["seq"] for r in receiver.records]
    assert seqs == sorted(seqs) and set(range(written)) <= set(seqs)
    for got in receiver.records:
        assert json.loads(got["body"]) == local[got["seq"]]
        assert got["service"] == "stockade" and got["scope"] == "stockade.audit" and got["time"] > 0
        assert got["event"] == local[got["seq"]]["event"]
    assert {g["severity"] for g in receiver.records if g["event"] == "call_denied"} <= {"WARN"}


def test_shipping_needs_the_audit_directory(deployment):
    deployment.add_tool("text-kit", "text_kit")
    deployment.audit = {"syslog": {"address": "127.0.0.1:6514"}}
    out = deployment.check()
    assert out.returncode != 0 and "audit.syslog" in out.stderr and "spool" in out.stderr
    deployment.audit = {"dir": "audit", "otlp": {"endpoint": "http://collector.example:4318/v1/logs"}}
    out = deployment.check()
    assert out.returncode != 0 and "audit.otlp.endpoint" in out.stderr
    deployment.audit = {}
    deployment.admin = {"listen": "0.0.0.0:9464"}
    out = deployment.check()
    assert out.returncode != 0 and "admin.listen" in out.stderr and "loopback" in out.stderr


def metric(text: str, name: str, **labels) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        if key == (f"{name}{{{want}}}" if labels else name):
            return float(value)
    raise AssertionError(f"no {name}{{{want}}} in\n{text}")


def test_metrics_count_what_the_audit_records(deployment):
    directory, _ = audited(deployment)
    admin = free_port()
    deployment.admin = {"listen": f"127.0.0.1:{admin}"}
    deployment.add_tool("cpu", "hostile_resource_cpu", limits={"timeout": "200ms", "fuel": 10**12})
    session = calls(deployment, 3)
    try:
        session.request("tools/call", {"name": "no-such-tool", "arguments": {}})
        session.call("transform", {"text": 5})
        session.call("spin", {})
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5) as response:
            text = response.read().decode()
            assert response.headers["Content-Type"].startswith("application/openmetrics-text")
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/healthz", timeout=5) as response:
            assert response.status == 200
    finally:
        session.close()
    assert metric(text, "stockade_calls_total", tool="transform", outcome="succeeded") == 3
    assert metric(text, "stockade_calls_total", tool="spin", outcome="limited") == 1
    assert metric(text, "stockade_limit_hits_total", kind="limit") == 1
    assert metric(text, "stockade_denials_total", rule="unknown_tool") == 1
    assert metric(text, "stockade_denials_total", rule="invalid_arguments") == 1
    assert metric(text, "stockade_call_duration_seconds_count", tool="transform") == 3
    assert metric(text, "stockade_fuel_total", tool="transform") > 0
    assert metric(text, "stockade_audit_up") == 1
    assert metric(text, "stockade_sandbox_slots") == 64
    assert metric(text, "stockade_sandbox_slots_in_use") == 0
    assert metric(text, "stockade_audit_records_total") == len(records(directory)) - 2  # not stopped, checkpoint


class Webhook:
    def __init__(self):
        self.received: list[dict] = []
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                hook.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def alerts_in(directory: Path) -> list[dict]:
    return [r for r in records(directory) if r["event"] == "alert"]


def test_each_alert_fires_on_its_sequence_and_not_on_normal_use(deployment):
    directory, _ = audited(deployment)
    deployment.add_tool("fetch", "fetch", egress={"allow": []})
    hook = Webhook()
    now = time.gmtime()
    inside = f"{now.tm_hour:02d}:00-{(now.tm_hour + 1) % 24:02d}:00"
    outside = f"{(now.tm_hour + 2) % 24:02d}:00-{(now.tm_hour + 3) % 24:02d}:00"
    deployment.alerts = {"first_use": True, "hours": inside, "error_threshold": 3,
                         "egress_denial_threshold": 2, "window": "1m", "webhook": hook.url}
    # Normal use: one client, a few good calls, in hours. Only the first
    # use of the one tool alerts.
    calls(deployment, 3).close()
    (first,) = alerts_in(directory)
    assert (first["data"]["kind"], first["severity"], first["tool"]) == ("first_use", "warning", "transform")
    wait_until(lambda: hook.received, what="the webhook")
    assert hook.received[0]["kind"] == "first_use" and hook.received[0]["client"] == "stdio"
    # A restart remembers the first use, and nothing changed: no alert.
    calls(deployment, 1).close()
    assert len(alerts_in(directory)) == 1

    # Two failures stay below the threshold; the third alerts once.
    session = RawSession(deployment)
    try:
        for _ in range(2):
            session.call("transform", {"text": 5})
        assert len(alerts_in(directory)) == 1
        for _ in range(3):
            session.call("transform", {"text": 5})
        spikes = [a for a in alerts_in(directory) if a["data"]["kind"] == "error_spike"]
        assert {a["detail"].split(":")[0] for a in spikes} == {"client `stdio`", "tool `transform`"}
        # Egress refusals: one stays quiet, the second alerts (critical).
        session.call("fetch", {"url": "http://127.0.0.1:1/a"})
        assert not [a for a in alerts_in(directory) if a["data"]["kind"] == "egress_denials"]
        session.call("fetch", {"url": "http://127.0.0.1:1/b"})
        (burst,) = [a for a in alerts_in(directory) if a["data"]["kind"] == "egress_denials"]
        assert burst["severity"] == "critical"
    finally:
        session.close()

    # Outside the configured hours every client's call alerts (once per window).
    deployment.alerts["hours"] = outside
    calls(deployment, 2).close()
    off = [a for a in alerts_in(directory) if a["data"]["kind"] == "off_hours"]
    assert len(off) == 1 and off[0]["client"] == "stdio"

    # A tool whose component or description differs from the last load.
    state = directory / "alerts.json"
    remembered = json.loads(state.read_text())
    remembered["tools"]["transform"] = ["0" * 64, remembered["tools"]["transform"][1]]
    state.write_text(json.dumps(remembered))
    deployment.alerts["hours"] = inside
    calls(deployment, 1).close()
    (changed,) = [a for a in alerts_in(directory) if a["data"]["kind"] == "tool_changed"]
    assert changed["severity"] == "critical" and changed["tool"] == "transform" and "component" in changed["detail"]
    kinds = [h["kind"] for h in wait_until(lambda: len(hook.received) >= 6 and hook.received, what="webhooks")]
    assert {"first_use", "error_spike", "egress_denials", "off_hours", "tool_changed"} <= set(kinds)
