"""Self-confinement: the serving process gives up, with Landlock, every
file, port and program its configuration does not need, before it serves.
`stockade selftest confinement` applies the same rules and attacks them; a
live server shows the kernel's refusal when a reload reaches past them."""

import re
import subprocess

import pytest

from conftest import BINARY, run_admin, text_of

pytestmark = pytest.mark.anyio


def confined_tools(deployment, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "note.txt").write_text("read me\n")
    work = tmp_path / "work"
    work.mkdir()
    deployment.add_tool(
        "files",
        "files",
        fs={"/data": {"host": str(data), "mode": "ro"}, "/scratch": {"host": str(work), "mode": "rw"}},
    )
    deployment.add_tool("fetch", "fetch", egress={"allow": [{"url": "https://api.example.com:8443"}]})
    deployment.add_tool("text-kit", "text_kit")
    return data, work


def selftest(deployment):
    return subprocess.run(
        [str(BINARY), "selftest", "confinement", "--config", str(deployment.write())],
        capture_output=True, text=True, timeout=60,
    )


def attempts(stdout: str) -> dict[str, tuple[str, str]]:
    """`attempt -> (verdict, outcome)` from the self-test's report."""
    found = {}
    for line in stdout.split("Attempts:")[1].splitlines():
        match = re.match(r"\s+(ok|FAIL)\s+(denied|allowed|failed)\s+(.+?)(?:  \((.*)\))?$", line)
        if match:
            found[match.group(3)] = (match.group(1), match.group(2))
    return found


async def test_selftest_attacks_every_rule_and_each_attack_is_refused(deployment, tmp_path):
    data, work = confined_tools(deployment, tmp_path)
    run = selftest(deployment)
    assert run.returncode == 0, run.stdout + run.stderr
    abi = int(re.search(r"confined by Landlock ABI (\d+)", run.stdout).group(1))
    assert abi >= 6
    assert "confinement holds" in run.stdout
    # What stays reachable is listed, with the reason for each.
    reachable = run.stdout.split("Reachable")[1].split("Attempts:")[0]
    assert f"read-write  {work}  (tool files: fs grant /scratch)" in reachable
    assert f"read        {data}  (tool files: fs grant /data)" in reachable
    assert "connect     TCP port 8443  (tool fetch: egress)" in reachable
    assert "bind" not in reachable  # stdio serves on no port
    found = attempts(run.stdout)
    denied = [a for a, (_, outcome) in found.items() if outcome == "denied"]
    allowed = [a for a, (_, outcome) in found.items() if outcome == "allowed"]
    assert all(verdict == "ok" for verdict, _ in found.values()), found
    for attack in ["read /etc/shadow", "read /proc/1/environ", "list /", "run /bin/sh",
                   f"write in {data}", f"write in {tmp_path}"]:
        assert attack in denied, (attack, found)
    assert any(a.startswith("connect to 127.0.0.1:") for a in denied)
    assert any(a.startswith("bind 127.0.0.1:") for a in denied)
    assert any(a.startswith("connect to abstract socket") for a in denied)
    assert any(a.startswith("signal the parent process") for a in denied)
    assert f"write in {work} (tool files)" in allowed
    # The probes leave nothing behind.
    assert list(work.iterdir()) == []


async def test_a_grant_of_the_config_directory_is_not_reported_as_an_escape(deployment, tmp_path):
    # A read-write grant of the whole config directory is the operator's
    # choice: writing there is then expected, not a failure.
    deployment.add_tool("files", "files", fs={"/all": {"host": str(tmp_path), "mode": "rw"}})
    run = selftest(deployment)
    assert run.returncode == 0, run.stdout
    found = attempts(run.stdout)
    assert found[f"write in {tmp_path} (tool files)"] == ("ok", "allowed")
    assert f"write in {tmp_path}" not in found


async def test_the_serving_process_is_confined_and_a_reload_cannot_widen_it(deployment, tmp_path):
    data, work = confined_tools(deployment, tmp_path)
    deployment.stdio = {}
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    async with deployment.client() as client:
        result = await client.call_tool("write_file", {"path": "/scratch/out.txt", "content": "kept"})
        assert not result.is_error, text_of(result)
        assert (work / "out.txt").read_text() == "kept"

        # A manifest in a directory the process gave up: the kernel refuses
        # the read, and the reload says so.
        moved = outside / "text-kit.toml"
        moved.write_text((deployment.dir / "text-kit.toml").read_text())
        deployment.manifests = ["files.toml", "fetch.toml", str(moved)]
        refused = run_admin(deployment, "reload")
        assert refused.returncode != 0
        assert "reload refused, the previous configuration keeps serving" in refused.stdout
        assert str(outside) in refused.stdout and "Permission denied" in refused.stdout
        assert "gave up at start (confinement); restart to serve it" in refused.stdout

        # A destination on a port the process gave up.
        deployment.manifests = ["files.toml", "fetch.toml", "text-kit.toml"]
        deployment.add_tool("fetch", "fetch", egress={"allow": [{"url": "https://api.example.com:9443"}]})
        deployment.manifests.pop()
        refused = run_admin(deployment, "reload")
        assert refused.returncode != 0
        assert "connecting to TCP port 9443 (tool fetch: egress)" in refused.stdout

        # The runtime keeps serving the configuration it started with.
        result = await client.call_tool("transform", {"text": "still here", "op": "upper"})
        assert text_of(result) == "STILL HERE"


async def test_the_start_reports_the_confinement_and_sets_no_new_privs(deployment, tmp_path):
    from conftest import RawSession

    confined_tools(deployment, tmp_path)
    deployment.server["require_confinement"] = True
    session = RawSession(deployment, env={"STOCKADE_LOG": "info"})
    try:
        assert session.call("transform", {"text": "a", "op": "upper"}) == (False, "A")
        with open(f"/proc/{session.proc.pid}/status") as status:
            fields = dict(line.split(":", 1) for line in status if ":" in line)
        assert fields["NoNewPrivs"].strip() == "1"
    finally:
        session.close()
    log = (deployment.dir / "stderr.log").read_text()
    assert re.search(r"confined by Landlock ABI \d+: files, TCP bind and connect", log), log
