"""A tool's stdout and stderr never reach the protocol stream."""

import pytest

from conftest import ERAS, INITIALIZE, INITIALIZED, raw_session, text_of, tool_call

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
    messages = [INITIALIZE, INITIALIZED, tool_call(2, "forge_jsonrpc", {})]
    replies, proc = raw_session(deployment.write(), messages)
    assert [r.get("id") for r in replies] == [1, 2]
    assert "FORGED" not in proc.stdout
    assert "list_changed" not in proc.stdout
    # The guest's words are in the host log, escaped and tagged with the tool.
    assert "FORGED" in proc.stderr
    assert 'tool="chatty"' in proc.stderr or "tool=chatty" in proc.stderr


def test_a_stdio_flood_is_capped_in_the_log(deployment):
    deployment.add_tool("chatty", "hostile_chatty", limits={"stdio": "4KiB"})
    messages = [INITIALIZE, INITIALIZED, tool_call(2, "flood_stdio", {})]
    replies, proc = raw_session(deployment.write(), messages)
    by_id = {r["id"]: r for r in replies}
    assert by_id[2]["result"]["content"][0]["text"] == "flooded"
    # 20 MiB were written; at most 2 x 4 KiB (plus log framing) were kept.
    assert proc.stderr.count("A") < 2 * 4096 + 4096
