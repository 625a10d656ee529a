"""Reload and rollback: SIGHUP and `stockade admin reload` swap in a new
configuration only when it has no problem at all (the old one keeps
serving otherwise, and the answer says why); calls running finish on the
version they started with; rate limits carry over; every accepted
configuration is kept as a version, and `stockade admin rollback` returns
to one in one command."""

import os
import signal
import time

import anyio
import pytest

from conftest import call_while, run_admin, sha256, text_of, wasm


def server_pids(deployment):
    control = deployment.dir / ".stockade" / "control"
    return [int(p.name[len("serve-"):-len(".sock")]) for p in control.glob("serve-*.sock")]


async def names(client):
    return {tool.name for tool in (await client.list_tools()).tools}


@pytest.mark.anyio
async def test_a_broken_file_is_refused_and_the_old_configuration_keeps_serving(deployment):
    deployment.add_tool("text-kit", "text_kit")
    async with deployment.client() as client:
        manifest = deployment.dir / "text-kit.toml"
        good = manifest.read_text()
        manifest.write_text(good + "\n[limits]\nmemory = \"lots\"\n")
        refused = run_admin(deployment, "reload")
        assert refused.returncode != 0
        assert "reload refused, the previous configuration keeps serving" in refused.stdout
        assert "text-kit.toml" in refused.stdout and "limits.memory" in refused.stdout
        assert "transform" in await names(client)
        assert text_of(await client.call_tool("transform", {"text": "a", "op": "upper"})) == "A"

        # A poisoned description is refused whole, too.
        manifest.write_text(good)
        deployment.add_tool("poisoned", "hostile_poisoned", tool={"expose": ["telemetry_url"]})
        deployment.write()
        refused = run_admin(deployment, "reload")
        assert refused.returncode != 0 and "description lint" in refused.stdout
        assert "telemetry_url" not in await names(client)


@pytest.mark.anyio
async def test_sighup_and_admin_reload_apply_a_good_change(deployment):
    deployment.add_tool("text-kit", "text_kit")
    seen = []

    async def handler(message):
        seen.append(repr(message))

    async with deployment.client(message_handler=handler) as client:
        assert "list_dir" not in await names(client)
        deployment.add_tool("files", "files")
        deployment.write()
        [pid] = server_pids(deployment)
        os.kill(pid, signal.SIGHUP)
        with anyio.fail_after(20):
            while "list_dir" not in await names(client):
                await anyio.sleep(0.05)
        assert any("list_changed" in m or "ToolListChanged" in m for m in seen)

        deployment.manifests.remove("files.toml")
        deployment.write()
        done = run_admin(deployment, "reload")
        assert done.returncode == 0, done.stdout + done.stderr
        # The same files as at start: version 1 again, not a new one.
        assert f"server pid {pid}: reloaded: version 1, 3 tools" in done.stdout
        assert "list_dir" not in await names(client)
    versions = run_admin(deployment, "versions").stdout
    assert [line.split()[0] for line in versions.splitlines()] == ["1", "2"]


@pytest.mark.anyio
async def test_rate_limits_carry_over_a_reload(deployment):
    deployment.add_tool("text-kit", "text_kit", limits={"rate": "2/min"})
    async with deployment.client() as client:
        for _ in range(2):
            assert not (await client.call_tool("stats", {"text": "x"})).is_error
        deployment.add_tool("files", "files")
        assert run_admin(deployment, "reload").returncode == 0
        assert "list_dir" in await names(client)
        limited = await client.call_tool("stats", {"text": "x"})
        assert limited.is_error and "rate limit exceeded" in text_of(limited)


@pytest.mark.anyio
async def test_a_running_call_finishes_on_the_version_it_started_with(deployment, tmp_path):
    audit = tmp_path / "audit"
    deployment.audit = {"dir": str(audit)}
    deployment.add_tool("cpu", "hostile_resource_cpu", limits={"timeout": "2s", "fuel": 1_000_000_000_000})
    async with deployment.client() as client:

        async def reload_without_it():
            with anyio.fail_after(20):
                while not any('"call_started"' in p.read_text() for p in audit.glob("audit-*.jsonl")):
                    await anyio.sleep(0.02)
            deployment.manifests.clear()
            deployment.add_tool("text-kit", "text_kit")
            done = await anyio.to_thread.run_sync(lambda: run_admin(deployment, "reload"))
            assert done.returncode == 0, done.stdout
            assert "spin" not in await names(client)

        result = await call_while(client, "spin", {}, reload_without_it)
        # The call ran to its own limit on the old version: not cut short.
        text = text_of(result)
        assert "timeout" in text or "time limit" in text, text
        assert "stopped" not in text and "unknown tool" not in text


@pytest.mark.anyio
async def test_rollback_restores_twenty_tools_and_their_digests_in_one_command(deployment):
    for index in range(20):
        deployment.add_tool(f"kit{index:02}", "text_kit", tool={"prefix": f"k{index:02}.", "expose": ["stats"]})
    original = {m: (deployment.dir / m).read_text() for m in deployment.manifests}
    async with deployment.client() as client:
        before = await names(client)
        assert len(before) == 20
        # A bad change: half the manifests now serve another component.
        for index in range(10):
            manifest = deployment.dir / f"kit{index:02}.toml"
            manifest.write_text(
                original[manifest.name]
                .replace(str(wasm("text_kit")), str(wasm("fetch")))
                .replace(sha256(wasm("text_kit")), sha256(wasm("fetch")))
                .replace('"stats"', '"fetch"')
            )
        assert run_admin(deployment, "reload").returncode == 0
        changed = await names(client)
        assert "k00.fetch" in changed and "k00.stats" not in changed

        started = time.monotonic()
        back = run_admin(deployment, "--reason", "bad deploy", "rollback")
        elapsed = time.monotonic() - started
        assert back.returncode == 0, back.stdout + back.stderr
        assert "rollback: files restored" in back.stdout and "reloaded: version" in back.stdout
        assert elapsed < 60, elapsed
        assert await names(client) == before
        assert text_of(await client.call_tool("k00.stats", {"text": "a b"}))
    # The files are what version 1 had.
    for name, text in original.items():
        assert (deployment.dir / name).read_text() == text
    versions = run_admin(deployment, "versions").stdout.splitlines()
    # Version 1 again is the latest state, not a new number.
    assert [line.split()[0] for line in versions] == ["1", "2"]
    missing = run_admin(deployment, "rollback", "9")
    assert missing.returncode != 0 and "no version 9 (kept: 1, 2)" in missing.stderr
