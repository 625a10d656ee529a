"""Sandbox slots: one tool's calls hold at most its share of them
(`server.tool_share`); waiting for one is bounded by `server.queue_timeout`
and ends with a `busy` error naming the limits; a call's own timeout starts
only when it has a slot."""

from __future__ import annotations

import json
import time

from conftest import RawSession


def deploy(deployment, *, queue_timeout: str, spin_timeout: str, quick_timeout: str, slots: int = 1):
    deployment.server["max_concurrent_calls"] = slots
    deployment.server["queue_timeout"] = queue_timeout
    deployment.add_tool("cpu", "hostile_resource_cpu", limits={"timeout": spin_timeout, "fuel": 10**12})
    deployment.add_tool("text-kit", "text_kit", limits={"timeout": quick_timeout})


def test_a_queued_call_that_waits_too_long_is_busy_not_timed_out(deployment):
    deploy(deployment, queue_timeout="300ms", spin_timeout="2s", quick_timeout="5s")
    session = RawSession(deployment)
    try:
        session.send({"jsonrpc": "2.0", "id": 900, "method": "tools/call", "params": {"name": "spin", "arguments": {}}})
        time.sleep(0.3)  # the spin holds the only slot
        is_error, text = session.call("transform", {"text": "queued", "op": "upper"})
        time.sleep(2)  # the spin ends at its own timeout and frees the slot
        after = session.call("transform", {"text": "after", "op": "upper"})
    finally:
        session.close()
    assert is_error
    assert (
        "busy: no sandbox slot came free within queue_timeout (300 ms; max_concurrent_calls = 1, tool_share = 1)"
        in text
    ), text
    assert "limit exceeded" not in text
    assert after == (False, "AFTER")


def test_time_spent_queued_does_not_count_against_the_calls_timeout(deployment):
    deploy(deployment, queue_timeout="5s", spin_timeout="1s", quick_timeout="500ms")
    session = RawSession(deployment)
    try:
        session.send({"jsonrpc": "2.0", "id": 900, "method": "tools/call", "params": {"name": "spin", "arguments": {}}})
        time.sleep(0.3)
        started = time.monotonic()
        result = session.call("transform", {"text": "patient", "op": "upper"})
        waited = time.monotonic() - started
    finally:
        session.close()
    # It waited longer than its own 500 ms timeout for the slot, then ran.
    assert waited > 0.5
    assert result == (False, "PATIENT")


def test_a_busy_tool_holds_only_its_share_of_the_slots(deployment):
    # Four slots, so each tool's default share is two.
    deploy(deployment, queue_timeout="10s", spin_timeout="2s", quick_timeout="5s", slots=4)
    session = RawSession(deployment)
    spins = [901, 902, 903, 904]
    try:
        for request_id in spins:
            session.send({"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
                          "params": {"name": "spin", "arguments": {}}})
        time.sleep(0.3)
        session.send({"jsonrpc": "2.0", "id": 950, "method": "tools/call",
                      "params": {"name": "transform", "arguments": {"text": "quick", "op": "upper"}}})
        order, replies = [], {}
        while len(replies) < 5:
            reply = json.loads(session.lines.get(timeout=30))
            order.append(reply["id"])
            replies[reply["id"]] = reply["result"]
    finally:
        session.close()
    # The other tool ran at once, before any of the spins ended.
    assert order[0] == 950, order
    assert replies[950]["content"][0]["text"] == "QUICK"
    # The spins ran two at a time, each for its own full timeout: none was busy.
    for request_id in spins:
        assert replies[request_id]["content"][0]["text"] == "limit exceeded: timeout (2000 ms)", replies[request_id]


def test_a_cancelled_call_stops_and_frees_its_slot(deployment):
    deploy(deployment, queue_timeout="500ms", spin_timeout="20s", quick_timeout="5s")
    session = RawSession(deployment)
    try:
        session.send({"jsonrpc": "2.0", "id": 901, "method": "tools/call",
                      "params": {"name": "spin", "arguments": {}}})
        time.sleep(0.3)  # the spin holds the only slot, for up to 20 s
        session.send({"jsonrpc": "2.0", "method": "notifications/cancelled",
                      "params": {"requestId": 901, "reason": "user pressed stop"}})
        # Within the 500 ms queue_timeout the slot is free again.
        after = session.call("transform", {"text": "next", "op": "upper"})
    finally:
        session.close()
    assert after == (False, "NEXT")
    log = (deployment.dir / "stderr.log").read_text()
    assert "limit exceeded: timeout" not in log
