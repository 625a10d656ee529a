"""Every refusal the host makes is named to the client in the rule's own
words, even when the tool swallows or renames it; bookkeeping of a hostile
loop stays bounded; and the smaller guarantees of a call: a truncated result
stays valid, an output schema is enforced, `host.caller` reports the
verified caller, listing runs without grants, and the compiled-component
cache refuses what it must."""

from __future__ import annotations

import os
import stat

import pytest

from conftest import RawSession, text_of

pytestmark = pytest.mark.anyio

MEMORY = "hostile_resource_memory"
SOCKETS = "hostile_net_sockets"
EGRESS = "hostile_net_egress"
OUTPUT = "hostile_resource_output"
AMBIENT = "hostile_resource_ambient"


async def test_a_memory_refusal_the_tool_handles_is_still_named(deployment):
    deployment.add_tool("memory", MEMORY, limits={"memory": "16MiB"})
    async with deployment.client() as client:
        hoard = await client.call_tool("hoard", {})
        after = await client.call_tool("ok", {})
    assert hoard.is_error
    first, *rest = text_of(hoard).splitlines()
    assert first == f"limit exceeded: memory ({16 << 20} bytes)"
    assert rest and rest[-1].startswith("allocation refused after"), rest
    assert not after.is_error and text_of(after) == "ok"


async def test_a_socket_refusal_is_named_whatever_the_tool_says(deployment):
    deployment.add_tool("sockets", SOCKETS)
    async with deployment.client() as client:
        dial = await client.call_tool("dial", {"target": "127.0.0.1:9"})
        again = await client.call_tool("dial", {"target": "127.0.0.1:9"})
        lookup = await client.call_tool("dial", {"target": "localhost:9"})
    for result in (dial, again):
        assert result.is_error
        lines = text_of(result).splitlines()
        assert lines[0].startswith("socket denied: wasi:sockets is not granted"), lines
        # What std itself said comes after, unchanged.
        assert "ermission denied" in lines[-1], lines
    assert lookup.is_error
    assert text_of(lookup).splitlines()[0].startswith("socket denied: name lookup through wasi:sockets is not granted"), text_of(lookup)


async def test_fs_caps_are_named_whatever_wasi_libc_reports(deployment, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "a.txt").write_text("a")
    grant = {"/scratch": {"host": str(work), "mode": "rw", "max_files": 0, "max_file_size": "1KiB"}}
    deployment.add_tool("files", "files", fs=grant)
    async with deployment.client() as client:
        too_big = await client.call_tool("write_file", {"path": "/scratch/a.txt", "content": "d" * 2000})
        new = await client.call_tool("write_file", {"path": "/scratch/new.txt", "content": "x"})
    assert too_big.is_error
    assert text_of(too_big).splitlines()[0] == "limit exceeded: fs /scratch max_file_size (1024 bytes)"
    assert new.is_error
    assert text_of(new).splitlines()[0] == "limit exceeded: fs /scratch max_files (0 per call)"


def test_a_denied_url_loop_stays_bounded_in_message_log_and_memory(deployment):
    deployment.add_tool("egress", EGRESS, egress={"max_requests": 100_000})
    session = RawSession(deployment)
    try:
        is_error, small = session.call("hammer", {"url": "http://127.0.0.2:1/x", "times": 10})
        before = session.rss_kib()
        is_error, text = session.call("hammer", {"url": "http://127.0.0.2:1/x", "times": 20_000})
        after = session.rss_kib()
        assert session.call("hammer", {"url": "http://127.0.0.2:1/y", "times": 1})[0]
    finally:
        session.close()
    assert is_error
    lines = text.splitlines()
    assert lines == ["egress denied: http://127.0.0.2:1 is not on the allowlist", "gave up: 20000 of 20000 requests failed"]
    assert small.splitlines()[0] == lines[0]
    assert after - before < 20_000, (before, after)
    log = (deployment.dir / "stderr.log").read_text()
    # One warning per distinct refusal per call, not one per request.
    warnings = [l for l in log.splitlines() if "WARN" in l and "is not on the allowlist" in l]
    assert len(warnings) == 3, log[-2000:]


async def test_egress_max_requests_bounds_a_call(deployment, http_server):
    deployment.add_tool(
        "egress",
        EGRESS,
        egress={"allow": [{"url": http_server.url, "private": True}], "max_requests": 20},
    )
    async with deployment.client() as client:
        result = await client.call_tool("hammer", {"url": f"{http_server.url}/hello", "times": 50})
    assert result.is_error
    assert text_of(result).splitlines() == [
        "egress denied: the call has made egress.max_requests (20) requests",
        "gave up: 30 of 50 requests failed",
    ]
    assert len(http_server.seen) == 20


async def test_many_distinct_refusals_are_capped_and_counted(deployment):
    deployment.add_tool("egress", EGRESS)
    async with deployment.client() as client:
        result = await client.call_tool("hammer", {"url": "http://127.0.0.2:{i}/", "times": 20})
    lines = text_of(result).splitlines()
    assert lines[:8] == [f"egress denied: http://127.0.0.2:{i} is not on the allowlist" for i in range(1, 9)]
    assert lines[8:] == ["(and 12 further refusals not shown)", "gave up: 20 of 20 requests failed"]


async def test_a_truncated_result_of_a_tool_with_an_output_schema_stays_valid(deployment):
    deployment.add_tool("output", OUTPUT, limits={"max_output": "1KiB", "on_oversize": "truncate"})
    async with deployment.client() as client:
        small = await client.call_tool("shaped", {"bytes": 10})
        cut = await client.call_tool("shaped", {"bytes": 5000})
        plain = await client.call_tool("huge", {"bytes": 5000})
    assert not small.is_error and small.structured_content == {"text": "y" * 10}
    # The client's own output-schema check accepted both results (it raises
    # on a success without structured content).
    assert cut.is_error and cut.structured_content is None
    assert "[output truncated at max_output = 1024 bytes]" in text_of(cut)
    assert "structured content dropped" in text_of(cut)
    assert not plain.is_error and "[output truncated" in text_of(plain)


async def test_structured_content_that_breaks_the_output_schema_is_refused(deployment):
    deployment.add_tool("output", OUTPUT)
    async with deployment.client() as client:
        lie = await client.call_tool("shaped", {"bytes": 1, "lie": True})
        honest = await client.call_tool("shaped", {"bytes": 1})
    assert lie.is_error
    assert text_of(lie) == "the tool returned structured content that does not match its output schema"
    assert not honest.is_error and honest.structured_content == {"text": "y"}


async def test_host_caller_reports_the_verified_caller(deployment):
    deployment.add_tool("ambient", AMBIENT)
    async with deployment.client() as client:
        me = await client.call_tool("whoami", {})
    assert not me.is_error
    assert me.structured_content == {"client": "stdio", "user": None, "groups": []}


async def test_listing_runs_without_the_tools_grants(deployment, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    deployment.add_tool("ambient", AMBIENT, fs={"/data": {"host": str(data), "mode": "ro"}})
    async with deployment.client() as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        ambient = await client.call_tool("ambient", {"probe_var": "PATH"})
    assert tools["ambient"].description.endswith("Preopens seen here: []")
    # The call itself does get its grant.
    assert ambient.structured_content["preopens"] == ["/data"]


async def test_a_corrupt_cache_artefact_is_recompiled_not_loaded(deployment, tmp_path):
    cache = tmp_path / "cache"
    deployment.server["cache_dir"] = str(cache)
    deployment.add_tool("ambient", AMBIENT)
    async with deployment.client() as client:
        assert not (await client.call_tool("whoami", {})).is_error
    artefacts = list(cache.glob("*.cwasm"))
    assert len(artefacts) == 1
    artefacts[0].write_bytes(b"\x7fELF" + os.urandom(4096))
    async with deployment.client() as client:
        after = await client.call_tool("whoami", {})
    assert not after.is_error, text_of(after)
    assert artefacts[0].read_bytes()[:4] == b"\x7fELF" and len(artefacts[0].read_bytes()) > 5000


def test_a_cache_directory_others_can_write_is_refused(deployment, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(0o777)
    deployment.server["cache_dir"] = str(cache)
    deployment.add_tool("ambient", AMBIENT)
    checked = deployment.check()
    assert checked.returncode != 0
    assert "writable by group or others" in checked.stderr
    assert str(cache) in checked.stderr
    assert "panicked" not in checked.stderr


def test_a_cache_artefact_others_can_write_is_not_loaded(deployment, tmp_path):
    cache = tmp_path / "cache"
    deployment.server["cache_dir"] = str(cache)
    deployment.add_tool("ambient", AMBIENT)
    assert deployment.check().returncode == 0
    (artefact,) = cache.glob("*.cwasm")
    artefact.chmod(0o666)
    checked = deployment.check()
    assert checked.returncode == 0, checked.stderr
    assert "not private" in checked.stderr
    # Recompiled and written afresh, private again.
    assert stat.S_IMODE(artefact.stat().st_mode) & 0o022 == 0


async def test_a_result_far_past_max_output_is_refused_while_lifted(deployment):
    # 8 MiB against max_output 64 KiB: wasmtime stops lifting at the
    # transfer bound (4 MiB here), so the result is never copied whole;
    # the client still reads the max_output rule.
    deployment.add_tool("output", "hostile_resource_output", limits={"max_output": "64KiB", "memory": "128MiB"})
    async with deployment.client() as client:
        flood = await client.call_tool("huge", {"bytes": 48 << 20})
        after = await client.call_tool("huge", {"bytes": 10})
    assert flood.is_error and text_of(flood) == f"limit exceeded: max_output ({64 << 10} bytes)"
    assert not after.is_error and text_of(after) == "x" * 10


async def test_one_enormous_host_call_is_refused_before_it_is_copied(deployment):
    deployment.add_tool("chatty", "hostile_chatty")
    async with deployment.client() as client:
        shout = await client.call_tool("shout", {"bytes": 8 << 20})
        small = await client.call_tool("shout", {"bytes": 100})
    assert shout.is_error
    assert text_of(shout) == (
        f"limit exceeded: the tool handed the host more than {4 << 20} bytes at once "
        "(result or host call; see max_output)"
    )
    assert not small.is_error and text_of(small) == "shouted"
