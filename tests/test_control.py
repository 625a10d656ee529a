"""The kill switch: `stockade admin` disables a tool, revokes a client or
locks everything down, through the control socket (owner only) or the
admin listener (admin keys). Effective at once, running calls stopped,
persisted across restarts, audited with who did it, clients told the
tool list changed; nothing of it reachable through MCP."""

import json
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp.shared.exceptions import MCPError

from conftest import BINARY, call_while, run_admin, text_of
from httpserve import api_key, free_port

SPIN = {"limits": {"timeout": "60s", "fuel": 1_000_000_000_000}}


def records(directory):
    found = []
    for path in sorted(directory.glob("audit-*.jsonl")):
        found += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return found


async def wait_for_record(directory, matches, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [r for r in records(directory) if matches(r)]
        if found:
            return found[0]
        await anyio.sleep(0.02)
    raise AssertionError("no such audit record")


def when(record) -> datetime:
    return datetime.fromisoformat(record["ts"].replace("Z", "+00:00"))


@pytest.mark.anyio
async def test_disable_stops_a_running_endless_call_and_outlives_a_restart(deployment, tmp_path):
    audit = tmp_path / "audit"
    deployment.audit = {"dir": str(audit)}
    deployment.add_tool("cpu", "hostile_resource_cpu", **SPIN)
    async with deployment.client() as client:
        done = None

        async def disable():
            nonlocal done
            await wait_for_record(audit, lambda r: r["event"] == "call_started" and r["tool"] == "spin")
            done = await anyio.to_thread.run_sync(
                lambda: run_admin(deployment, "--reason", "incident 42", "disable-tool", "spin")
            )

        stopped = await call_while(client, "spin", {}, disable)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "1 running call(s) stopped" in done.stdout
        assert stopped.is_error
        assert "stopped while running: refused: tool `spin` was disabled by an operator" in text_of(stopped)
        # Refused from now on, hidden from the list; the rest serves.
        again = await client.call_tool("spin", {})
        assert again.is_error and "tool `spin` was disabled by an operator (kill switch)" in text_of(again)
        names = {t.name for t in (await client.list_tools()).tools}
        assert "spin" not in names and "ok" in names
        assert not (await client.call_tool("ok", {})).is_error

    found = records(audit)
    [change] = [r for r in found if r["event"] == "control"]
    assert change["data"]["operation"] == "disable-tool" and change["tool"] == "spin"
    assert change["data"]["by"].startswith("local user root (uid 0)")
    assert change["detail"] == "incident 42"
    [finished] = [r for r in found if r["event"] == "call_finished" and r["tool"] == "spin"]
    assert finished["error_class"] == "stopped" and finished["outcome"] == "denied"
    # The server's own clock: from the switch to the stopped call's record.
    latency_ms = (when(finished) - when(change)).total_seconds() * 1000
    assert 0 <= latency_ms <= 100, latency_ms

    # A restart keeps the switch.
    async with deployment.client() as client:
        assert "spin" not in {t.name for t in (await client.list_tools()).tools}
        assert "disabled by an operator" in text_of(await client.call_tool("spin", {}))
    # Switched back with no server running: saved for the next start.
    back = run_admin(deployment, "enable-tool", "spin")
    assert back.returncode == 0 and "no server is running" in back.stdout
    async with deployment.client() as client:
        assert "spin" in {t.name for t in (await client.list_tools()).tools}


@pytest.mark.anyio
async def test_revoke_and_lockdown_refuse_naming_the_rule(deployment):
    deployment.stdio = {"client": "desk"}
    deployment.add_tool("text-kit", "text_kit")
    async with deployment.client() as client:
        assert run_admin(deployment, "revoke-client", "desk").returncode == 0
        with pytest.raises(MCPError) as refused:
            await client.list_tools()
        assert "client `desk` was revoked by an operator" in str(refused.value)
        result = await client.call_tool("transform", {"text": "a", "op": "upper"})
        assert result.is_error and "client `desk` was revoked" in text_of(result)
        assert run_admin(deployment, "restore-client", "desk").returncode == 0
        assert text_of(await client.call_tool("transform", {"text": "a", "op": "upper"})) == "A"

        assert run_admin(deployment, "lockdown", "on").returncode == 0
        with pytest.raises(MCPError) as refused:
            await client.list_tools()
        assert "lockdown" in str(refused.value)
        result = await client.call_tool("transform", {"text": "a", "op": "upper"})
        assert result.is_error and "the server is in lockdown" in text_of(result)
        status = run_admin(deployment, "status")
        assert "lockdown ON" in status.stdout
        assert run_admin(deployment, "lockdown", "off").returncode == 0
        assert text_of(await client.call_tool("transform", {"text": "b", "op": "upper"})) == "B"


@pytest.mark.anyio
async def test_legacy_sessions_are_told_the_tool_list_changed(deployment):
    deployment.add_tool("text-kit", "text_kit")
    seen = []

    async def handler(message):
        seen.append(type(message).__name__ + repr(message))

    async with deployment.client(mode="legacy", message_handler=handler) as client:
        await client.list_tools()
        assert run_admin(deployment, "disable-tool", "stats").returncode == 0
        with anyio.fail_after(10):
            while not any("list_changed" in m or "ToolListChanged" in m for m in seen):
                await anyio.sleep(0.02)
        assert "stats" not in {t.name for t in (await client.list_tools()).tools}


@pytest.mark.anyio
async def test_2026_listeners_are_told_the_tool_list_changed(deployment):
    deployment.add_tool("text-kit", "text_kit")
    async with deployment.client(mode="2026-07-28") as client:
        async with client.listen(tools_list_changed=True) as subscription:
            assert run_admin(deployment, "disable-tool", "stats").returncode == 0
            with anyio.fail_after(10):
                event = await subscription.__anext__()
            assert "tool" in repr(event).lower()
        assert "stats" not in {t.name for t in (await client.list_tools()).tools}


@pytest.mark.anyio
async def test_the_admin_listener_needs_an_admin_key(deployment, tmp_path):
    key, entry = api_key("oncall")
    port = free_port()
    deployment.admin = {"listen": f"127.0.0.1:{port}", "keys": [{"name": "oncall", "sha256": entry["sha256"]}]}
    deployment.add_tool("text-kit", "text_kit")
    audit = tmp_path / "audit"
    deployment.audit = {"dir": str(audit)}
    base = f"http://127.0.0.1:{port}"
    change = {"operation": {"op": "disable-tool", "target": "stats"}}
    async with deployment.client() as client:
        async with httpx2.AsyncClient() as http:
            assert (await http.post(f"{base}/control", json=change)).status_code == 401
            wrong = await http.post(f"{base}/control", json=change, headers={"Authorization": "Bearer stk_wrong"})
            assert wrong.status_code == 401
            assert (await http.get(f"{base}/healthz")).status_code == 200
            done = await http.post(f"{base}/control", json=change, headers={"Authorization": f"Bearer {key}"})
            assert done.status_code == 200, done.text
            assert done.json()["switches"]["disabled_tools"] == ["stats"]
        result = await client.call_tool("stats", {"text": "a b"})
        assert result.is_error and "disabled by an operator" in text_of(result)
        # The command line over HTTP, with a key file.
        key_file = tmp_path / "admin-key"
        key_file.write_text(key + "\n")
        enabled = subprocess.run(
            [str(BINARY), "admin", "--url", base, "--key-file", str(key_file), "enable-tool", "stats"],
            capture_output=True, text=True, timeout=60,
        )
        assert enabled.returncode == 0, enabled.stdout + enabled.stderr
        assert not (await client.call_tool("stats", {"text": "a b"})).is_error
    found = records(audit)
    by = [r["data"]["by"] for r in found if r["event"] == "control"]
    assert by[0].startswith("admin key `oncall` from 127.0.0.1:")
    refused = [r["error_class"] for r in found if r["event"] == "auth_failed"]
    assert refused == ["no_credentials", "invalid_token"]
    # No keys configured: control over HTTP is off.
    deployment.admin = {"listen": f"127.0.0.1:{free_port()}"}
    async with deployment.client():
        async with httpx2.AsyncClient() as http:
            port = deployment.admin["listen"].split(":")[1]
            off = await http.post(f"http://127.0.0.1:{port}/control", json=change, headers={"Authorization": f"Bearer {key}"})
            assert off.status_code == 403 and "no [[admin.keys]]" in off.text


@pytest.mark.anyio
async def test_only_the_owner_may_switch(deployment):
    # A control directory whose parent anyone may enter, so that only the
    # directory's own mode and the socket's stand in the way.
    parent = Path(tempfile.mkdtemp(prefix="stockade-control-"))
    parent.chmod(0o755)
    control = parent / "control"
    deployment.control = {"dir": str(control)}
    deployment.add_tool("text-kit", "text_kit")
    try:
        async with deployment.client() as client:
            assert control.stat().st_mode & 0o777 == 0o700
            [socket_path] = control.glob("serve-*.sock")
            assert socket_path.stat().st_mode & 0o777 == 0o600
            nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
            refused = subprocess.run(
                [*nobody, str(BINARY), "admin", "--dir", str(control), "disable-tool", "stats"],
                capture_output=True, text=True, timeout=60,
            )
            assert refused.returncode != 0
            assert str(control) in refused.stderr and "Permission denied" in refused.stderr
            # Straight at the socket: the kernel refuses the connection.
            connect = (
                "import socket, sys\n"
                "s = socket.socket(socket.AF_UNIX)\n"
                "try:\n    s.connect(sys.argv[1])\nexcept PermissionError:\n    print('refused')\n"
            )
            direct = subprocess.run(
                [*nobody, sys.executable, "-c", connect, str(socket_path)],
                capture_output=True, text=True, timeout=60,
            )
            assert direct.stdout.strip() == "refused", direct.stdout + direct.stderr
            assert "stats" in {t.name for t in (await client.list_tools()).tools}
        assert "disabled tools: none" in run_admin(deployment, "status").stdout
    finally:
        shutil.rmtree(parent, ignore_errors=True)


@pytest.mark.anyio
async def test_no_admin_operation_is_reachable_through_mcp(deployment):
    deployment.add_tool("text-kit", "text_kit")
    async with deployment.client() as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert not any("disable" in n or "lockdown" in n or "admin" in n for n in names)
        for method in ("disable-tool", "admin/disable-tool", "control"):
            with pytest.raises(MCPError):
                await client.call_tool(method, {"target": "stats"})
        assert "stats" in {t.name for t in (await client.list_tools()).tools}


@pytest.mark.anyio
async def test_a_control_directory_deeper_than_a_socket_address_works(deployment, tmp_path):
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deployment.control = {"dir": str(deep)}
    deployment.add_tool("text-kit", "text_kit")
    async with deployment.client() as client:
        done = run_admin(deployment, "disable-tool", "stats")
        assert done.returncode == 0 and "server pid" in done.stdout, done.stdout + done.stderr
        assert "stats" not in {t.name for t in (await client.list_tools()).tools}
