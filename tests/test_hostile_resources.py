"""Hostile resource corpus: tools that spin, hoard memory, overflow their
stack, return floods, look for ambient authority and for what an earlier
call left behind. Each attack must end with the limit that stopped it
(the message the client gets) and a benign call right after must succeed;
the runtime's own memory must come back.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from mcp import Client

from conftest import BINARY, ROOT, RawSession, text_of

pytestmark = pytest.mark.anyio

CPU = "hostile_resource_cpu"
MEMORY = "hostile_resource_memory"
OUTPUT = "hostile_resource_output"
AMBIENT = "hostile_resource_ambient"
FRESHNESS = "hostile_resource_freshness"


def assert_no_host_paths(text: str, deployment) -> None:
    for path in (str(ROOT), str(deployment.dir), str(BINARY)):
        assert path not in text, f"host path {path} leaked into {text!r}"


# --- CPU -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        ({"timeout": "1s", "fuel": 1_000_000_000_000}, "limit exceeded: timeout (1000 ms)"),
        ({"timeout": "60s", "fuel": 20_000_000}, "limit exceeded: fuel (20000000 units)"),
    ],
    ids=["timeout", "fuel"],
)
async def test_an_infinite_loop_ends_at_its_limit(deployment, limits, expected):
    deployment.add_tool("cpu", CPU, limits=limits)
    async with deployment.client() as client:
        started = time.monotonic()
        spun = await client.call_tool("spin", {})
        elapsed = time.monotonic() - started
        after = await client.call_tool("ok", {})
    assert spun.is_error
    assert text_of(spun) == expected
    assert elapsed < 15
    assert not after.is_error and text_of(after) == "ok"


async def test_one_spinning_call_among_fifty_does_not_hold_up_the_others(deployment):
    deployment.add_tool("cpu", CPU, limits={"timeout": "3s", "fuel": 1_000_000_000_000})
    deployment.add_tool("memory", MEMORY, tool={"prefix": "mem."})

    async with deployment.client() as client:

        async def timed(name: str):
            started = time.monotonic()
            result = await client.call_tool(name, {}, read_timeout_seconds=60)
            return name, result, time.monotonic() - started

        started = time.monotonic()
        names = ["ok" if i % 2 else "mem.ok" for i in range(49)]
        names.insert(17, "spin")
        outcomes = await asyncio.gather(*(timed(name) for name in names))
        total = time.monotonic() - started
        after = await client.call_tool("ok", {})

    assert len(outcomes) == 50
    for name, result, elapsed in outcomes:
        if name == "spin":
            assert result.is_error and text_of(result) == "limit exceeded: timeout (3000 ms)"
        else:
            assert not result.is_error, text_of(result)
            assert text_of(result) == "ok"
            # The benign calls have a 10 s budget each; they end well within it.
            assert elapsed < 10, (name, elapsed)
    assert total < 30
    assert not after.is_error


# Small frames exhaust wasm's own stack, which the host bounds
# (max_wasm_stack): a limit. Large frames exhaust the shadow stack a Rust
# guest keeps in linear memory, whose size its toolchain chose: the guest
# crashes out of bounds, and the host says it was deep in a recursion.
@pytest.mark.parametrize(
    "frame_bytes, expected",
    [
        (0, "limit exceeded: stack"),
        (4096, "tool crashed: out-of-bounds memory access at least 20 calls deep in a recursion "
         "(most likely the tool overflowed its own stack)"),
    ],
    ids=["wasm-stack", "shadow-stack"],
)
async def test_deep_recursion_ends_with_a_clear_error(deployment, frame_bytes, expected):
    deployment.add_tool("cpu", CPU)
    async with deployment.client() as client:
        deep = await client.call_tool("recurse", {"frame_bytes": frame_bytes})
        after = await client.call_tool("ok", {})
    assert deep.is_error
    assert text_of(deep) == expected
    assert_no_host_paths(text_of(deep), deployment)
    assert not after.is_error and text_of(after) == "ok"


# --- memory --------------------------------------------------------------


async def test_a_memory_bomb_ends_at_the_memory_limit(deployment):
    deployment.add_tool("memory", MEMORY, limits={"memory": "16MiB"})
    async with deployment.client() as client:
        bomb = await client.call_tool("bomb", {})
        grown = await client.call_tool("grow", {})
        after = await client.call_tool("ok", {})
    assert bomb.is_error
    assert text_of(bomb) == f"limit exceeded: memory ({16 << 20} bytes)"
    # Raw memory.grow sees the refusal (-1) and stops at the cap.
    assert not grown.is_error, text_of(grown)
    assert grown.structured_content["granted_pages"] > 0
    assert grown.structured_content["memory_bytes"] <= 16 << 20
    assert not after.is_error and text_of(after) == "ok"


def test_a_hundred_memory_bombs_leave_the_runtime_bounded(deployment):
    deployment.add_tool("memory", MEMORY, limits={"memory": "32MiB"})
    session = RawSession(deployment)
    try:
        assert session.call("bomb", {}) == (True, f"limit exceeded: memory ({32 << 20} bytes)")
        after_first = session.rss_kib()
        for _ in range(100):
            is_error, text = session.call("bomb", {})
            assert is_error and text.startswith("limit exceeded: memory"), text
        after_hundredth = session.rss_kib()
        assert session.call("ok", {}) == (False, "ok")
    finally:
        session.close()
    # 100 x 32 MiB were touched; the runtime keeps well under one bomb more.
    assert after_hundredth - after_first < 64 << 10, (after_first, after_hundredth)


# --- output --------------------------------------------------------------


async def test_a_result_above_max_output_is_refused(deployment):
    deployment.add_tool("output", OUTPUT, limits={"max_output": "64KiB"})
    async with deployment.client() as client:
        flood = await client.call_tool("huge", {"bytes": 8 << 20})
        after = await client.call_tool("huge", {"bytes": 1000})
    assert flood.is_error
    assert text_of(flood) == f"limit exceeded: max_output ({64 << 10} bytes)"
    assert not after.is_error and text_of(after) == "x" * 1000


async def test_a_result_above_max_output_is_cut_and_marked_when_asked(deployment):
    deployment.add_tool("output", OUTPUT, limits={"max_output": "64KiB", "on_oversize": "truncate"})
    async with deployment.client() as client:
        flood = await client.call_tool("huge", {"bytes": 8 << 20})
        after = await client.call_tool("huge", {"bytes": 1000})
    assert not flood.is_error
    kept, marker = (c.text for c in flood.content)
    assert kept == "x" * (64 << 10)
    assert marker == f"[output truncated at max_output = {64 << 10} bytes]"
    assert not after.is_error and text_of(after) == "x" * 1000


# --- ambient authority ---------------------------------------------------

CANARY = "STOCKADE_TEST_CANARY"
CANARY_VALUE = "canary-4f1c2a9e-never-in-a-tool"


async def test_a_tool_sees_no_ambient_authority(deployment):
    deployment.add_tool("ambient", AMBIENT)
    params = deployment.params({CANARY: CANARY_VALUE, "AWS_SECRET_ACCESS_KEY": CANARY_VALUE})
    async with Client(params, mode="legacy") as client:
        first = await client.call_tool("ambient", {"probe_var": CANARY})
        second = await client.call_tool("ambient", {"probe_var": "AWS_SECRET_ACCESS_KEY"})
    for result in (first, second):
        assert not result.is_error, text_of(result)
        seen = result.structured_content
        assert seen["std_env"] == [] and seen["wasi_env"] == []
        assert seen["probe_var"] is None
        assert seen["std_args"] == [] and seen["wasi_args"] == []
        assert seen["wasi_cwd"] is None
        assert seen["stdin_bytes"] == 0 and seen["stdin_error"] is None
        assert seen["preopens"] == []
        assert CANARY_VALUE not in text_of(result)
        assert len(seen["random"]) == 32
    assert first.structured_content["random"] != second.structured_content["random"]
    assert first.structured_content["insecure_random"] != second.structured_content["insecure_random"]


# --- freshness -----------------------------------------------------------


async def test_no_call_finds_what_an_earlier_call_left(deployment):
    deployment.add_tool("fresh", FRESHNESS)
    async with deployment.client() as client:
        # More calls than the pool keeps slots (max_concurrent_calls + 4),
        # one after another (same slot, reused) and in bursts (many slots).
        sequential = [await client.call_tool("probe", {}) for _ in range(80)]
        bursts = []
        for _ in range(4):
            bursts += await asyncio.gather(*(client.call_tool("probe", {}) for _ in range(20)))
    for result in sequential + bursts:
        assert not result.is_error, text_of(result)
        seen = result.structured_content
        assert seen["static_bytes"] >= 3 << 20 and seen["grown_bytes"] >= 4 << 20
        assert seen["static_markers"] == 0 and seen["grown_markers"] == 0, seen
        assert seen["static_nonzero"] == 0 and seen["grown_nonzero"] == 0, seen
        # The probe does see a marker when one is there (it checks its own).
        assert seen["marked_now"] == seen["grown_bytes"] // 16


# --- the runtime's own memory --------------------------------------------


def run_corpus(session: RawSession) -> list[str]:
    """One pass of every resource attack; returns the error texts."""
    errors = []
    for name, args in [
        ("spin", {}),
        ("recurse", {"frame_bytes": 0}),
        ("recurse", {"frame_bytes": 4096}),
        ("mem.bomb", {}),
        ("mem.grow", {}),
        ("huge", {"bytes": 8 << 20}),
        ("ambient", {"probe_var": "HOME"}),
        ("probe", {}),
        ("ok", {}),
    ]:
        is_error, text = session.call(name, args)
        if is_error:
            errors.append(text)
    assert len(errors) == 5, errors
    return errors


def test_the_runtime_memory_returns_after_the_corpus(deployment):
    deployment.add_tool("cpu", CPU, limits={"timeout": "300ms", "fuel": 1_000_000_000_000})
    deployment.add_tool("memory", MEMORY, tool={"prefix": "mem."}, limits={"memory": "32MiB"})
    deployment.add_tool("output", OUTPUT, limits={"max_output": "64KiB"})
    deployment.add_tool("ambient", AMBIENT)
    deployment.add_tool("fresh", FRESHNESS)
    session = RawSession(deployment)
    try:
        # Warm-up: pool slots, caches and the allocator settle in.
        run_corpus(session)
        run_corpus(session)
        before = session.rss_kib()
        errors = [e for _ in range(4) for e in run_corpus(session)]
        after = session.rss_kib()
    finally:
        session.close()
    # Errors name the limit and never carry a host path.
    for text in errors:
        assert text.startswith(("limit exceeded: ", "tool crashed: out-of-bounds")), text
        assert_no_host_paths(text, deployment)
    # Each pass touches over 80 MiB of guest memory and lifts an 8 MiB
    # result; four passes leave the runtime within a small margin.
    assert after - before < 32 << 10, (before, after)
