"""Policy end to end: `[access]` hides a tool from callers outside it (and
reports it exactly like an unknown one), the per-caller rate names its rule
and the retry time, and a per-tool concurrency limit refuses the extra call
while the runtime keeps serving."""

from __future__ import annotations

import json
import time

import pytest

from conftest import RawSession, text_of


def test_access_hides_a_tool_from_callers_outside_it(deployment):
    deployment.stdio = {"client": "desk", "groups": ["analysts"]}
    deployment.add_tool("text-kit", "text_kit", access={"groups": ["analysts"]})
    deployment.add_tool("cpu", "hostile_resource_cpu", access={"groups": ["ops"]})
    session = RawSession(deployment)
    try:
        listed = [t["name"] for t in session.request("tools/list", {})["result"]["tools"]]
        hidden = session.request("tools/call", {"name": "ok", "arguments": {}})
        missing = session.request("tools/call", {"name": "no_such_tool", "arguments": {}})
        allowed = session.call("transform", {"text": "ok", "op": "upper"})
    finally:
        session.close()
    assert "transform" in listed and "ok" not in listed and "spin" not in listed
    # A hidden tool and a missing one are answered alike (the name aside).
    assert hidden["error"]["code"] == missing["error"]["code"] == -32602
    assert hidden["error"]["message"] == "unknown tool `ok`"
    assert missing["error"]["message"] == "unknown tool `no_such_tool`"
    assert allowed == (False, "OK")


def test_the_rate_is_per_caller_and_names_its_rule(deployment):
    deployment.add_tool("text-kit", "text_kit", limits={"rate": "2/min"})
    session = RawSession(deployment)
    try:
        results = [session.call("transform", {"text": "x", "op": "upper"}) for _ in range(3)]
    finally:
        session.close()
    assert results[:2] == [(False, "X"), (False, "X")]
    assert results[2][0]
    assert "rate limit exceeded for `transform`: at most 2 calls per 60s; retry in" in results[2][1], results[2]


def test_a_concurrency_limit_refuses_the_extra_call_and_the_runtime_keeps_serving(deployment):
    deployment.add_tool("cpu", "hostile_resource_cpu", limits={"timeout": "1s", "concurrency": 1, "fuel": 10**12})
    session = RawSession(deployment)
    try:
        session.send({"jsonrpc": "2.0", "id": 901, "method": "tools/call", "params": {"name": "spin", "arguments": {}}})
        time.sleep(0.3)
        second = session.call("spin", {})
        replies = {}
        while 901 not in replies:
            reply = json.loads(session.lines.get(timeout=30))
            replies[reply["id"]] = reply
        after = session.call("ok", {})
    finally:
        session.close()
    assert second == (True, "concurrency limit reached for `spin` (1 calls at once); try again")
    assert replies[901]["result"]["content"][0]["text"] == "limit exceeded: timeout (1000 ms)"
    assert after == (False, "ok")


@pytest.mark.anyio
async def test_a_caller_budget_spans_every_tool(deployment):
    deployment.add_tool("text-kit", "text_kit")
    deployment.add_tool("cpu", "hostile_resource_cpu")
    deployment.server["caller_budget"] = "3/day"
    async with deployment.client() as client:
        first = await client.call_tool("transform", {"text": "a", "op": "upper"})
        second = await client.call_tool("ok", {})
        third = await client.call_tool("stats", {"text": "a b"})
        fourth = await client.call_tool("ok", {})
        listed = await client.list_tools()
    assert not any(r.is_error for r in (first, second, third))
    assert fourth.is_error
    assert "budget exhausted: this caller may make 3 calls per 86400s across all tools (server.caller_budget)" in text_of(fourth)
    # Listing is not a call.
    assert len(listed.tools) > 2
