"""Crash safety: `kill -9` of the server while it compiles and while it
serves a load of writes, then a restart. The compiled-component cache is
never used corrupt, a read-write grant holds only whole files from calls
that wrote atomically, kill switches hold, and the audit chain verifies."""

import json
import signal
import subprocess
import time
import zlib

from conftest import BINARY, RawSession, run_admin, tool_call
from test_audit import audited, records, verify


def content(i: int) -> str:
    return f"{i:06d}:" * 3000  # 21 KB, different for every call


def grant_out(deployment, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    deployment.add_tool("files", "files", fs={"/out": {"host": str(out), "mode": "rw", "max_file_size": "1MiB"}})
    return out


def artefacts(cache):
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in cache.glob("*.cwasm")}


def test_kill_9_while_compiling_never_leaves_an_artefact_that_is_used_corrupt(deployment, tmp_path):
    cache = tmp_path / "cache"
    deployment.server["cache_dir"] = str(cache)
    deployment.add_tool("text-kit", "text_kit")
    grant_out(deployment, tmp_path)
    config = deployment.write()
    for delay in (0.01, 0.05, 0.15, 0.4, 1.0):
        proc = subprocess.Popen([str(BINARY), "serve", "--config", str(config)], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    # Plant the damage a crash without atomic writes would leave: an
    # artefact cut short under its final name.
    assert list(cache.glob("*.cwasm")), "no start lived long enough to compile"
    for path in cache.glob("*.cwasm"):
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    session = RawSession(deployment)
    try:
        assert session.call("transform", {"text": "after", "op": "upper"}) == (False, "AFTER")
        assert session.call("list_dir", {"path": "/out"})[0] is False
    finally:
        session.close()
    # Every artefact is now whole and matches the check beside it.
    kept = artefacts(cache)
    assert len(kept) == 2
    for name in kept:
        data = (cache / name).read_bytes()
        assert (cache / f"{name}.check").read_text().strip() == f"{len(data)} {zlib.crc32(data):08x}"
    # And the next start uses them as they are (nothing is recompiled).
    again = RawSession(deployment)
    try:
        assert again.call("transform", {"text": "x", "op": "upper"}) == (False, "X")
    finally:
        again.close()
    assert artefacts(cache) == kept


def test_kill_9_under_load_loses_no_whole_file_switch_or_record(deployment, tmp_path):
    directory, public = audited(deployment, checkpoint_interval="200ms")
    out = grant_out(deployment, tmp_path)
    deployment.stdio = {"max_in_flight": 400}
    deployment.server["queue_timeout"] = "60s"
    session = RawSession(deployment)
    assert run_admin(deployment, "--reason", "crash test", "disable-tool", "stats").returncode == 0
    total, answered = 300, {}
    for i in range(total):
        session.send(tool_call(20_000 + i, "write_file",
                               {"path": f"/out/f{i}.txt", "content": content(i), "atomic": True}))
    deadline = time.monotonic() + 60
    while len(answered) < 80 and time.monotonic() < deadline:
        reply = json.loads(session.lines.get(timeout=30))
        if "result" in reply:
            assert reply["result"]["isError"] is False, reply
            answered[reply["id"] - 20_000] = reply["result"]["_meta"]["io.stockade/correlation"]
    session.proc.send_signal(signal.SIGKILL)
    session.proc.wait(timeout=10)
    session.stderr.close()
    assert len(answered) >= 80

    # Every file under its own name is whole; only hidden partial files
    # of the calls the kill cut short may be left beside them.
    whole = set()
    for path in out.iterdir():
        if path.name.startswith("."):
            assert path.name.endswith(".partial"), path.name
            continue
        i = int(path.name[1:-len(".txt")])
        assert path.read_text() == content(i), path.name
        whole.add(i)
    assert set(answered) <= whole

    restarted = RawSession(deployment)
    try:
        # The kill switch set before the crash still holds.
        refused, text = restarted.call("stats", {"text": "a b"})
        assert refused and "disabled" in text, text
        assert restarted.call("write_file", {"path": "/out/after.txt", "content": "x", "atomic": True})[0] is False
    finally:
        restarted.close()
    assert (out / "after.txt").read_text() == "x"

    found = records(directory)
    started = {r["correlation"] for r in found if r["event"] == "call_started"}
    finished = {r["correlation"] for r in found if r["event"] == "call_finished"}
    assert set(answered.values()) <= finished <= started
    assert [r["seq"] for r in found] == list(range(len(found)))
    out = verify(directory, public=public)
    assert out.returncode == 0, out.stdout + out.stderr
