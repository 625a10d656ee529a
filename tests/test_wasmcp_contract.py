"""wasmcp tools components (`wasmcp:mcp-v20251125/tools@0.1.x`): Stockade
lists and calls them through `list-tools` and `call-tool` with a message
context that carries the protocol version alone, keeps its limits on them,
and refuses at load, naming the import, a component that reaches for a
wasmcp host interface (server-side sessions, notifications, streaming).
The component is tools/wasmcp-tools-js, written here against the
interface's published definition (tools/wasmcp-tools-js/wit).
"""

from __future__ import annotations

import json

import pytest

from conftest import text_of

pytestmark = pytest.mark.anyio


async def test_a_wasmcp_component_lists_and_runs_its_tools(deployment):
    deployment.add_tool("wasmcp", "wasmcp_tools_js")
    async with deployment.client() as client:
        listed = {t.name: t for t in (await client.list_tools()).tools}
        reversed_ = await client.call_tool("reverse", {"text": "stockade"})
        stats = await client.call_tool("stats", {"numbers": [1, 2, 6]})
        empty = await client.call_tool("stats", {"numbers": []})
        context = await client.call_tool("context", {})
        refused = await client.call_tool("refuse", {})
        after = await client.call_tool("reverse", {"text": "ok"})
    assert sorted(listed) == ["context", "refuse", "reverse", "spin", "stats"]
    assert listed["reverse"].description == "Reverses a text."
    assert listed["reverse"].input_schema["required"] == ["text"]
    assert listed["stats"].output_schema["required"] == ["count", "sum", "mean"]
    assert listed["stats"].annotations.read_only_hint is True
    assert listed["stats"].annotations.idempotent_hint is True
    assert text_of(reversed_) == "edakcots"
    assert stats.structured_content == {"count": 3, "sum": 9, "mean": 3}
    assert empty.structured_content == {"count": 0, "sum": 0, "mean": None}
    # The context carries the protocol version and nothing the host does not offer.
    assert json.loads(text_of(context)) == {
        "protocol_version": "2025-11-25",
        "client_stream": False,
        "session": False,
        "identity": False,
        "http_context": False,
    }
    assert refused.is_error and text_of(refused) == "refused: this tool always says no"
    assert not after.is_error and text_of(after) == "ko"


@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        ({"timeout": "1s", "fuel": 1_000_000_000_000}, "limit exceeded: timeout (1000 ms)"),
        ({"fuel": 300_000_000}, "limit exceeded: fuel (300000000 units)"),
    ],
    ids=["timeout", "fuel"],
)
async def test_limits_hold_for_a_wasmcp_component(deployment, limits, expected):
    deployment.add_tool("wasmcp", "wasmcp_tools_js", limits=limits)
    async with deployment.client() as client:
        spun = await client.call_tool("spin", {})
        after = await client.call_tool("reverse", {"text": "ab"})
    assert spun.is_error and text_of(spun) == expected
    assert not after.is_error and text_of(after) == "ba"


async def test_a_component_that_imports_a_wasmcp_host_interface_is_refused_by_name(deployment):
    deployment.add_tool("sessions", "hostile_wasmcp_sessions")
    deployment.add_tool("wasmcp", "wasmcp_tools_js")
    checked = deployment.check()
    assert checked.returncode == 1
    assert "sessions.toml" in checked.stdout + checked.stderr
    assert "it imports `wasmcp:sessions-probe/session-store@0.1.0`, a wasmcp host interface" in (
        checked.stdout + checked.stderr
    )
    # `serve` serves the rest.
    async with deployment.client() as client:
        listed = sorted(t.name for t in (await client.list_tools()).tools)
        reversed_ = await client.call_tool("reverse", {"text": "ab"})
    assert listed == ["context", "refuse", "reverse", "spin", "stats"]
    assert text_of(reversed_) == "ba"
