"""The audit trail: its own writer, the hash chain and signed checkpoints,
`stockade audit verify` against every kind of tampering, recovery after
kill -9, failing closed when it cannot be written, masking, rotation,
retention and `stockade audit query`."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import BINARY, RawSession, text_of, tool_call
from test_secrets import bound, openbao, other  # noqa: F401  (fixtures)

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def keygen(directory: Path) -> tuple[Path, Path]:
    key = directory / "audit.key"
    out = subprocess.run([str(BINARY), "keygen", "--out", str(key)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    return key, Path(f"{key}.pub")


def audited(deployment, **settings) -> tuple[Path, Path]:
    """Text-kit with a signed audit directory; returns (dir, public key)."""
    deployment.add_tool("text-kit", "text_kit")
    key, public = keygen(deployment.dir)
    directory = deployment.dir / "audit"
    deployment.audit = {"dir": str(directory), "signing_key_file": str(key), **settings}
    return directory, public


def verify(*paths, public: Path | None = None, extra: tuple = ()) -> subprocess.CompletedProcess:
    args = [str(BINARY), "audit", "verify", *map(str, paths), *extra]
    if public:
        args += ["--public-key", str(public)]
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


def records(directory: Path) -> list[dict]:
    found = []
    for path in sorted(directory.glob("audit-*.jsonl")):
        for line in path.read_text().splitlines():
            try:
                found.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return found


def lines_of(directory: Path) -> tuple[Path, list[str]]:
    (path,) = sorted(directory.glob("audit-*.jsonl"))
    return path, path.read_text().splitlines()


def run_calls(deployment, count: int = 3, env: dict | None = None) -> None:
    session = RawSession(deployment, env=env)
    try:
        session.request("tools/list", {})
        for i in range(count):
            assert session.call("transform", {"text": f"call {i}", "op": "upper"}) == (False, f"CALL {i}")
        refused = session.request("tools/call", {"name": "no-such-tool", "arguments": {}})
        assert "unknown tool" in refused["error"]["message"]
        is_error, text = session.call("transform", {"text": 5})
        assert is_error and "invalid arguments" in text
    finally:
        session.close()


def test_every_event_is_recorded_chained_signed_and_verifies(deployment):
    directory, public = audited(deployment, checkpoint_interval="200ms")
    run_calls(deployment)
    found = records(directory)
    events = [r["event"] for r in found]
    assert events[-1] == "checkpoint", events  # the one that closes the log
    # The others come every 200 ms, wherever a slow start or call puts them.
    flow = [event for event in events if event != "checkpoint"]
    assert flow[0] == "config_loaded" and flow[1] == "list" and flow[-1] == "stopped", flow
    assert [r["seq"] for r in found] == list(range(len(found)))
    assert all(TS.match(r["ts"]) for r in found)
    config = found[0]["data"]
    assert config["tools"][0]["name"] == "json_pick" and len(config["config_sha256"]) == 64

    started = [r for r in found if r["event"] == "call_started"]
    finished = [r for r in found if r["event"] == "call_finished"]
    assert len(started) == len(finished) == 3
    for begin in started:
        (end,) = [r for r in finished if r["correlation"] == begin["correlation"]]
        # The start is written before the sandbox runs: it comes first.
        assert begin["seq"] < end["seq"]
        assert begin["arguments"]["op"] == "upper" and begin["tool"] == "transform"
        assert len(begin["component"]) == 64 and begin["client"] == "stdio"
        assert end["outcome"] == "succeeded" and "error_class" not in end
        assert end["fuel"] > 0 and end["output_bytes"] > 0 and "duration_ms" in end
    denied = [r for r in found if r["event"] == "call_denied"]
    assert {(r["outcome"], r["error_class"]) for r in denied} == {
        ("denied", "unknown_tool"), ("denied", "invalid_arguments")}
    checkpoints = [r for r in found if r["event"] == "checkpoint"]
    assert checkpoints and all(r["sig"] and r["key"] for r in checkpoints)

    out = verify(directory, public=public)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"ok: {len(found)} records" in out.stdout and "signatures verified" in out.stdout
    # Private to the server's user.
    assert oct(directory.stat().st_mode & 0o777) == "0o700"
    assert {oct(p.stat().st_mode & 0o777) for p in directory.glob("audit-*.jsonl")} == {"0o600"}


def test_no_log_filter_silences_the_audit(deployment):
    directory, public = audited(deployment)
    run_calls(deployment, count=1, env={"STOCKADE_LOG": "off"})
    assert len([r for r in records(directory) if r["event"] == "call_finished"]) == 1
    assert "stockade::audit" not in (deployment.dir / "stderr.log").read_text()
    # Without a directory the chained records go to stderr, still unfiltered.
    deployment.audit = {}
    run_calls(deployment, count=1, env={"STOCKADE_LOG": "off"})
    lines = [l for l in (deployment.dir / "stderr.log").read_text().splitlines() if l.startswith("stockade::audit: ")]
    stderr_records = [json.loads(l.split(": ", 1)[1]) for l in lines]
    assert [r["seq"] for r in stderr_records] == list(range(len(stderr_records)))
    assert "call_finished" in [r["event"] for r in stderr_records]


def rechain(lines: list[str], start: int) -> list[str]:
    """What an attacker without the key can do: recompute every hash from
    line `start` on so the chain itself is whole again."""
    out = lines[:start]
    for line in lines[start:]:
        record = json.loads(line)
        record["prev"] = hashlib.sha256(out[-1].encode()).hexdigest()
        out.append(json.dumps(record, separators=(",", ":")))
    return out


def test_verify_names_the_first_break_for_each_kind_of_tampering(deployment, tmp_path):
    directory, public = audited(deployment, checkpoint_interval="100ms")
    session = RawSession(deployment)
    try:
        for i in range(12):
            session.call("transform", {"text": f"t{i}", "op": "upper"})
            time.sleep(0.03)
    finally:
        session.close()
    path, lines = lines_of(directory)
    assert sum('"event":"checkpoint"' in l for l in lines) >= 2
    target = next(i for i, l in enumerate(lines) if '"event":"call_finished"' in l)
    line_no = target + 1

    def tampered(name: str, new_lines: list[str], head: bool = True) -> subprocess.CompletedProcess:
        copy = tmp_path / name
        copy.mkdir()
        (copy / path.name).write_text("".join(l + "\n" for l in new_lines))
        if head:
            shutil.copy(directory / "audit.head", copy / "audit.head")
        return verify(copy, public=public)

    edited = list(lines)
    edited[target] = edited[target].replace('"outcome":"succeeded"', '"outcome":"denied"')
    deleted = lines[:target] + lines[target + 1:]
    inserted = lines[:target + 1] + [lines[target]] + lines[target + 1:]
    reordered = lines[:target] + [lines[target + 1], lines[target]] + lines[target + 2:]
    last_checkpoint = max(i for i, l in enumerate(lines) if '"event":"checkpoint"' in l)
    cut = lines[:last_checkpoint - 2]
    rebuilt = rechain(edited, target + 1)
    garbage = lines[:target] + ["not a record"] + lines[target:]
    cases = {
        "edited": (edited, [f"{path.name}:{line_no}", "was edited"]),
        "deleted": (deleted, [f"{path.name}:{line_no}", "missing", "deleted"]),
        "inserted": (inserted, [f"{path.name}:{line_no + 1}", "inserted"]),
        "reordered": (reordered, [f"{path.name}:{line_no}", "reordered"]),
        "truncated": (cut, ["cut from its end"]),
        "rechained": (rebuilt, ["signature does not verify", "chain rebuilt"]),
        "garbage": (garbage, [f"{path.name}:{line_no}", "not an audit record"]),
    }
    for name, (new_lines, expected) in cases.items():
        out = tampered(name, new_lines)
        assert out.returncode == 1, (name, out.stdout, out.stderr)
        assert out.stdout.startswith("BROKEN: "), (name, out.stdout)
        for words in expected:
            assert words in out.stdout, (name, words, out.stdout)
    # A forged head, and a wrong public key, are named too.
    other_key = tmp_path / "other"
    other_key.mkdir()
    _, other_public = keygen(other_key)
    wrong = verify(directory, public=other_public)
    assert wrong.returncode == 1 and "signed with key" in wrong.stdout
    intact = verify(directory, public=public)
    assert intact.returncode == 0, intact.stdout


def test_kill_9_amid_a_thousand_calls_then_restart_continues_the_chain(deployment):
    directory, public = audited(deployment, checkpoint_interval="200ms")
    deployment.stdio = {"max_in_flight": 1000}
    deployment.server["max_concurrent_calls"] = 64
    deployment.server["queue_timeout"] = "60s"
    session = RawSession(deployment)
    answered = {}
    total = 1000
    for i in range(total):
        session.send(tool_call(10_000 + i, "transform", {"text": f"n{i}", "op": "upper"}))
    deadline = time.monotonic() + 60
    while len(answered) < 300 and time.monotonic() < deadline:
        reply = json.loads(session.lines.get(timeout=30))
        if "result" in reply:
            answered[reply["id"]] = reply["result"]["_meta"]["io.stockade/correlation"]
    session.proc.send_signal(signal.SIGKILL)
    session.proc.wait(timeout=10)
    session.stderr.close()
    assert len(answered) >= 300
    # Whatever the kill left, every answered call has both its records.
    found = records(directory)
    finished = {r["correlation"] for r in found if r["event"] == "call_finished"}
    started = {r["correlation"] for r in found if r["event"] == "call_started"}
    assert set(answered.values()) <= finished <= started
    # Simulate the worst case too: the process died in the middle of a line.
    (path,) = sorted(directory.glob("audit-*.jsonl"))
    with open(path, "a") as f:
        f.write('{"seq":999999,"ts":"2026-')
    restarted = RawSession(deployment)
    try:
        assert restarted.call("transform", {"text": "after", "op": "upper"}) == (False, "AFTER")
    finally:
        restarted.close()
    after = records(directory)
    (recovered,) = [r for r in after if r["event"] == "recovered"]
    assert recovered["skipped"][0]["bytes"] == len('{"seq":999999,"ts":"2026-')
    assert [r["seq"] for r in after] == list(range(len(after)))
    out = verify(directory, public=public)
    assert out.returncode == 0, out.stdout + out.stderr


def test_a_log_cut_shorter_than_its_head_is_refused_at_start(deployment):
    directory, public = audited(deployment)
    run_calls(deployment, count=2)
    path, lines = lines_of(directory)
    path.write_text("".join(l + "\n" for l in lines[:-3]))
    proc = subprocess.run([str(BINARY), "serve", "--config", str(deployment.write())],
                          input="", capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "records were cut from its end" in proc.stderr and "audit.head" in proc.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a small tmpfs")
def test_calls_fail_closed_when_the_audit_cannot_be_written_and_recover(deployment, tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)], check=True)
    try:
        # Records larger than a page, so a full disk cannot hide one in
        # the room left in the file's last page.
        directory, public = audited(deployment, fsync="every", max_value_bytes=8192)
        deployment.audit["dir"] = str(mount / "audit")
        session = RawSession(deployment)
        try:
            assert session.call("transform", {"text": "before", "op": "upper"}) == (False, "BEFORE")
            filler = mount / "filler"
            subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=4k", "count=1000"],
                           capture_output=True)
            is_error, text = session.call("transform", {"text": "blocked" * 1000, "op": "upper"})
            assert is_error and "audit: cannot write" in text and "the call was not run" in text
            filler.unlink()
            assert session.call("transform", {"text": "again", "op": "upper"}) == (False, "AGAIN")
        finally:
            session.close()
        found = records(mount / "audit")
        texts = [r.get("arguments", {}).get("text") for r in found if r["event"] == "call_started"]
        assert texts == ["before", "again"]
        out = verify(mount / "audit", public=public)
        assert out.returncode == 0, out.stdout + out.stderr
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_long_arguments_are_cut_and_the_cap_is_configurable(deployment):
    directory, _ = audited(deployment, max_value_bytes=32)
    session = RawSession(deployment)
    try:
        assert session.call("transform", {"text": "x" * 5000, "op": "upper"})[0] is False
    finally:
        session.close()
    (started,) = [r for r in records(directory) if r["event"] == "call_started"]
    assert started["arguments"]["text"] == "x" * 32 + "…[cut: 5000 bytes]"
    assert "x" * 33 not in "".join(p.read_text() for p in directory.glob("audit-*.jsonl"))


def test_rotation_by_size_and_retention_by_age_keep_the_chain_verifiable(deployment):
    directory, public = audited(deployment, max_file_size="64KiB", max_value_bytes=1024)
    session = RawSession(deployment)
    try:
        for i in range(80):
            session.call("transform", {"text": f"{i} " + "y" * 1000, "op": "upper"})
    finally:
        session.close()
    files = sorted(directory.glob("audit-*.jsonl"))
    assert len(files) >= 2
    out = verify(directory, public=public)
    assert out.returncode == 0, out.stdout
    # Removing a middle file is named.
    copy = deployment.dir / "copy"
    shutil.copytree(directory, copy)
    (copy / files[1].name).unlink() if len(files) > 2 else (copy / files[0].name).unlink()
    broken = verify(copy, public=public)
    assert broken.returncode == 1 and "missing" in broken.stdout, broken.stdout
    # Age out the first file: restart with its day made old.
    old = files[0]
    aged = old.with_name(re.sub(r"audit-\d{8}-", "audit-20200101-", old.name))
    old.rename(aged)
    run_calls(deployment, count=1)
    assert not aged.exists()
    (retention,) = [r for r in records(directory) if r["event"] == "retention"]
    assert retention["deleted"][0]["file"] == aged.name and retention["deleted"][0]["first_seq"] == 0
    out = verify(directory, public=public)
    assert out.returncode == 0, out.stdout
    assert "deleted by retention" in out.stdout


def test_query_answers_who_did_what_when(deployment):
    directory, _ = audited(deployment)
    deployment.stdio = {"client": "alpha", "user": "ann"}
    run_calls(deployment, count=2)
    deployment.stdio = {"client": "beta", "user": "bob"}
    run_calls(deployment, count=1)

    def query(*args) -> subprocess.CompletedProcess:
        return subprocess.run([str(BINARY), "audit", "query", str(directory), *args],
                              capture_output=True, text=True, timeout=60)

    ann = query("--client", "alpha", "--event", "call_finished", "--json")
    assert ann.returncode == 0, ann.stderr
    rows = [json.loads(l) for l in ann.stdout.splitlines()]
    assert len(rows) == 2 and {r["user"] for r in rows} == {"ann"}
    denied = query("--user", "bob", "--outcome", "denied", "--json")
    assert {json.loads(l)["error_class"] for l in denied.stdout.splitlines()} == {"unknown_tool", "invalid_arguments"}
    table = query("--tool", "transform", "--since", "1h", "--outcome", "succeeded")
    assert table.returncode == 0 and "3 record(s)" in table.stdout
    assert table.stdout.splitlines()[0].split()[:4] == ["ts", "event", "client", "user"]
    assert query("--until", "2000-01-01", "--json").stdout == ""
    bad = query("--since", "last tuesday")
    assert bad.returncode != 0 and "--since" in bad.stderr and "not a time" in bad.stderr
    # The two runs are one chain.
    assert verify(directory).returncode == 0


def test_bad_audit_settings_are_named(deployment):
    deployment.add_tool("text-kit", "text_kit")
    for key, value, words in [
        ("fsync", "sometimes", "audit.fsync"),
        ("retention", "5s", "audit.retention"),
        ("max_file_size", "1KiB", "audit.max_file_size"),
        ("signing_key_file", "missing.key", "audit.signing_key_file"),
    ]:
        deployment.audit = {"dir": "audit", key: value}
        out = deployment.check()
        assert out.returncode != 0 and words in out.stderr, (key, out.stderr)
    deployment.audit = {"dir": "audit", "signing_key_file": str(deployment.dir / "stockade.toml")}
    proc = subprocess.run([str(BINARY), "serve", "--config", str(deployment.write())],
                          input="", capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "STOCKADE AUDIT SIGNING KEY" in proc.stderr
    shared = deployment.dir / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    deployment.audit = {"dir": str(shared)}
    proc = subprocess.run([str(BINARY), "serve", "--config", str(deployment.write())],
                          input="", capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "writable by group or others" in proc.stderr and str(shared) in proc.stderr
    exists = subprocess.run([str(BINARY), "keygen", "--out", str(deployment.dir / "stockade.toml")],
                            capture_output=True, text=True, timeout=30)
    assert exists.returncode != 0 and "never overwritten" in exists.stderr


def test_sensitive_and_secret_arguments_are_masked(deployment, openbao, bound, other):
    from test_secrets import TOKEN_V1, deploy

    deploy(deployment, openbao.url, openbao, bound, other, component="hostile_secret_thief")
    key, public = keygen(deployment.dir)
    directory = deployment.dir / "audit"
    deployment.audit = {"dir": str(directory), "signing_key_file": str(key)}
    session = RawSession(deployment)
    try:
        # The token is injected into this request, so the host knows it.
        assert session.call("echo", {"url": f"{bound.url}/api/data"})[0] is False
        is_error, text = session.call("sign_in", {"user": "ann", "password": "pw-Kq93-zz", "pin": "pin-7Zq-88"})
        assert (is_error, text) == (False, "signed in as ann")
        # A caller that passes the credential back in an argument.
        session.call("sign_in", {"user": TOKEN_V1, "password": "x", "pin": "y"})
        session.call("transform", {"text": f"prefix {TOKEN_V1} suffix", "op": "upper"})
    finally:
        session.close()
    started = [r for r in records(directory) if r["event"] == "call_started"]
    signed = [r["arguments"] for r in started if r["tool"] == "sign_in"]
    assert signed[0] == {"user": "ann", "password": "[masked: sensitive]", "pin": "[masked: sensitive]"}
    assert signed[1]["user"] == "[masked: secret]"
    (transform,) = [r["arguments"] for r in started if r["tool"] == "transform"]
    assert transform == {"text": "[masked: secret]", "op": "upper"}
    everything = "".join(p.read_text() for p in directory.glob("audit-*.jsonl"))
    for value in ("pw-Kq93-zz", "pin-7Zq-88", TOKEN_V1):
        assert value not in everything
    assert verify(directory, public=public).returncode == 0


def test_retention_keeps_what_a_shipper_has_not_delivered(deployment):
    directory, public = audited(deployment)
    # A collector that never answers: nothing is delivered.
    deployment.audit["otlp"] = {"endpoint": "http://127.0.0.1:9/v1/logs"}
    run_calls(deployment, count=1)
    (old,) = sorted(directory.glob("audit-*.jsonl"))
    aged = old.with_name(re.sub(r"audit-\d{8}-", "audit-20200101-", old.name))
    old.rename(aged)
    run_calls(deployment, count=1)
    assert aged.exists()
    assert not [r for r in records(directory) if r["event"] == "retention"]
    assert verify(directory, public=public).returncode == 0


def test_a_crash_just_after_rotation_is_recovered(deployment):
    directory, public = audited(deployment)
    run_calls(deployment, count=1)
    written = len(records(directory))
    (path,) = sorted(directory.glob("audit-*.jsonl"))
    # The process died right after opening the next file, mid-way through
    # its first record.
    rotated = path.with_name(re.sub(r"-\d{12}\.jsonl$", f"-{written:012d}.jsonl", path.name))
    rotated.write_text('{"seq":%d,"ts":"20' % written)
    run_calls(deployment, count=1)
    after = records(directory)
    assert [r["seq"] for r in after] == list(range(len(after)))
    (recovered,) = [r for r in after if r["event"] == "recovered"]
    assert recovered["file"] == rotated.name and recovered["seq"] == written
    out = verify(directory, public=public)
    assert out.returncode == 0, out.stdout
