"""A tool's stdout and stderr never reach the protocol stream."""

import json
import subprocess

import pytest

from conftest import BINARY, ERAS, text_of

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("mode", ERAS)
async def test_forged_jsonrpc_from_a_tool_never_reaches_the_client(deployment, mode):
    deployment.add_tool("chatty", "hostile_chatty")
    deployment.add_tool("text-kit", "text_kit")
    async with deployment.client(mode) as client:
        forged = await client.call_tool("forge_jsonrpc", {})
        flooded = await client.call_tool("flood_stdio", {})
        after = await client.call_tool("transform", {"text": "clean", "op": "upper"})
    assert text_of(forged) == "printed"
    assert "FORGED" not in text_of(forged)
    assert text_of(flooded) == "flooded"
    assert text_of(after) == "CLEAN"


def test_raw_stdout_holds_only_our_replies_and_guest_output_is_logged_tagged(deployment):
    deployment.add_tool("chatty", "hostile_chatty")
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}},
    }
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "forge_jsonrpc", "arguments": {}}}
    lines = [json.dumps(init), json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}), json.dumps(call)]
    proc = subprocess.run(
        [str(BINARY), "serve", "--config", str(deployment.write())],
        input="".join(l + "\n" for l in lines),
        capture_output=True,
        text=True,
        timeout=60,
    )
    replies = [json.loads(l) for l in proc.stdout.splitlines() if l.strip()]
    assert [r.get("id") for r in replies] == [1, 2]
    assert "FORGED" not in proc.stdout
    assert "list_changed" not in proc.stdout
    # The guest's words are in the host log, escaped and tagged with the tool.
    assert "FORGED" in proc.stderr
    assert 'tool="chatty"' in proc.stderr or "tool=chatty" in proc.stderr


def test_a_stdio_flood_is_capped_in_the_log(deployment):
    deployment.add_tool("chatty", "hostile_chatty", limits={"stdio": "4KiB"})
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}},
    }
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "flood_stdio", "arguments": {}}}
    lines = [json.dumps(init), json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}), json.dumps(call)]
    proc = subprocess.run(
        [str(BINARY), "serve", "--config", str(deployment.write())],
        input="".join(l + "\n" for l in lines),
        capture_output=True,
        text=True,
        timeout=60,
    )
    replies = {r["id"]: r for r in (json.loads(l) for l in proc.stdout.splitlines() if l.strip())}
    assert replies[2]["result"]["content"][0]["text"] == "flooded"
    # 20 MiB were written; at most 2 x 4 KiB (plus log framing) were kept.
    assert proc.stderr.count("A") < 2 * 4096 + 4096
