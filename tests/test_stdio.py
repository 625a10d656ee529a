"""Core: every example tool over MCP stdio, in both protocol eras."""

import json
import time

import pytest
from mcp.shared.exceptions import MCPError

from conftest import ERAS, INITIALIZE, INITIALIZED, raw_session, text_of, tool_call

pytestmark = pytest.mark.anyio

EXAMPLE_TOOLS = [
    "fetch",
    "json_pick",
    "list_dir",
    "read_file",
    "search_files",
    "stats",
    "transform",
    "write_file",
]


@pytest.mark.parametrize("mode", ERAS)
async def test_lists_every_example_tool_in_order_with_annotations(examples_deployment, mode):
    async with examples_deployment.client(mode) as client:
        listed = await client.list_tools()
    tools = {t.name: t for t in listed.tools}
    assert [t.name for t in listed.tools] == EXAMPLE_TOOLS
    stats = tools["stats"]
    assert stats.title == "Text statistics"
    assert stats.input_schema["type"] == "object"
    assert "text" in stats.input_schema["properties"]
    assert stats.output_schema is not None
    assert stats.annotations.read_only_hint is True
    assert tools["write_file"].annotations.destructive_hint is True
    assert tools["fetch"].annotations.open_world_hint is True


@pytest.mark.parametrize("mode", ERAS)
async def test_calls_the_pure_compute_tools(examples_deployment, mode):
    async with examples_deployment.client(mode) as client:
        slug = await client.call_tool("transform", {"text": "Hello, Sandboxed World!", "op": "slug"})
        stats = await client.call_tool("stats", {"text": "one two\nthree"})
        picked = await client.call_tool("json_pick", {"json": '{"a": [10, 20]}', "pointer": "/a/1"})
    assert not slug.is_error and text_of(slug) == "hello-sandboxed-world"
    assert stats.structured_content == {"chars": 13, "words": 3, "lines": 2, "bytes": 13}
    assert json.loads(text_of(stats)) == stats.structured_content
    assert text_of(picked) == "20"


@pytest.mark.parametrize("mode", ERAS)
async def test_files_tool_reads_searches_and_writes_only_where_granted(examples_deployment, mode):
    async with examples_deployment.client(mode) as client:
        listing = await client.call_tool("list_dir", {"path": "/data"})
        read = await client.call_tool("read_file", {"path": "/data/notes/plan.txt"})
        found = await client.call_tool("search_files", {"path": "/data", "pattern": "needle"})
        wrote = await client.call_tool("write_file", {"path": "/scratch/out.txt", "content": "saved"})
        refused = await client.call_tool("write_file", {"path": "/data/new.txt", "content": "no"})
    names = [e["name"] for e in listing.structured_content["entries"]]
    assert names == ["README.txt", "notes"]
    assert "needle in a haystack" in text_of(read)
    assert "/data/notes/plan.txt:2: needle in a haystack" in text_of(found)
    assert not wrote.is_error
    assert (examples_deployment.dir / "work" / "out.txt").read_text() == "saved"
    assert refused.is_error
    assert not (examples_deployment.dir / "data" / "new.txt").exists()


@pytest.mark.parametrize("mode", ERAS)
async def test_fetch_reaches_an_allowlisted_local_server(deployment, http_server, mode):
    deployment.add_tool("fetch", "fetch", egress={"allow": [{"url": http_server.url, "private": True}]})
    async with deployment.client(mode) as client:
        ok = await client.call_tool("fetch", {"url": f"{http_server.url}/hello"})
        other = await client.call_tool("fetch", {"url": "http://127.0.0.2:9/hello"})
    assert not ok.is_error and text_of(ok) == "hello from upstream"
    assert other.is_error
    assert "egress denied" in text_of(other) and "not on the allowlist" in text_of(other)


@pytest.mark.parametrize("mode", ERAS)
async def test_invalid_arguments_name_the_field_and_the_server_keeps_serving(examples_deployment, mode):
    async with examples_deployment.client(mode) as client:
        wrong_type = await client.call_tool("transform", {"text": 42, "op": "upper"})
        missing = await client.call_tool("transform", {"text": "x"})
        bad_enum = await client.call_tool("transform", {"text": "x", "op": "explode"})
        with pytest.raises(MCPError) as unknown:
            await client.call_tool("no_such_tool", {})
        after = await client.call_tool("transform", {"text": "still here", "op": "upper"})
    assert wrong_type.is_error and "/text" in text_of(wrong_type)
    assert missing.is_error and "op" in text_of(missing)
    assert bad_enum.is_error and "/op" in text_of(bad_enum)
    assert unknown.value.error.code == -32602
    assert "no_such_tool" in unknown.value.error.message
    assert text_of(after) == "STILL HERE"


def test_survives_garbage_and_unknown_methods_then_exits_when_stdin_closes(examples_deployment):
    lines = [
        INITIALIZE,
        INITIALIZED,
        "this is not json",
        '{"jsonrpc": "2.0", "id": 2, "method": "tools/list"',
        {"jsonrpc": "2.0", "id": 3, "method": "no/such/method"},
        {"jsonrpc": "2.0", "id": 4, "method": "ping"},
        tool_call(5, "transform", {"text": "ok", "op": "upper"}),
    ]
    started = time.monotonic()
    replies, proc = raw_session(examples_deployment.write(), lines, timeout=30)
    by_id = {r.get("id"): r for r in replies}
    assert by_id[1]["result"]["serverInfo"]["name"] == "stockade"
    assert by_id[3]["error"]["code"] == -32601
    assert by_id[4]["result"] == {}
    assert by_id[5]["result"]["content"][0]["text"] == "OK"
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - started < 20


def test_stdout_carries_only_protocol_and_logs_go_to_stderr(examples_deployment):
    replies, proc = raw_session(examples_deployment.write(), [INITIALIZE])
    assert all(r.get("jsonrpc") == "2.0" for r in replies)
    assert "ready" in proc.stderr


async def test_prefixed_tools_are_called_by_their_served_name(deployment):
    deployment.add_tool("kit", "text_kit", tool={"prefix": "kit."})
    async with deployment.client() as client:
        names = [t.name for t in (await client.list_tools()).tools]
        result = await client.call_tool("kit.transform", {"text": "a", "op": "upper"})
        with pytest.raises(MCPError):
            await client.call_tool("transform", {"text": "a", "op": "upper"})
    assert names == ["kit.json_pick", "kit.stats", "kit.transform"]
    assert text_of(result) == "A"
