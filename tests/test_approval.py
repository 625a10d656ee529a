"""Human approval and idempotency. A tool marked `approval = "destructive"`
runs a destructive call only once a person says yes through MCP
elicitation: an `input_required` result with a sealed `requestState` in
the 2026-07-28 era, an `elicitation/create` request in the legacy one.
Decline, cancel, timeout, replay, alteration and clients that cannot ask
are refused with the reason; clients without elicitation may wait for an
out-of-band `stockade admin approve` by someone else. Destructive calls
with an idempotency key run once."""

import json
import anyio
import pytest
from mcp import types

from conftest import call_while, run_admin, text_of
from httpserve import HttpStockade, api_key, mcp_client

ERAS = ["legacy", "2026-07-28"]
WRITE = {"path": "/scratch/out.txt", "content": "hello"}


def deploy(deployment, tmp_path, **access):
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    deployment.add_tool(
        "files",
        "files",
        fs={"/scratch": {"host": str(work), "mode": "rw"}},
        access={"approval": "destructive", **access},
    )
    deployment.audit = {"dir": str(tmp_path / "audit")}
    return work


def answering(action, approve=True, asked=None, delay=0.0):
    async def callback(context, params):
        if asked is not None:
            asked.append(params.message)
        if delay:
            await anyio.sleep(delay)
        content = {"approve": approve} if action == "accept" else None
        return types.ElicitResult(action=action, content=content)

    return callback


def approvals(tmp_path):
    found = []
    for path in sorted((tmp_path / "audit").glob("audit-*.jsonl")):
        found += [json.loads(line) for line in path.read_text().splitlines()]
    return [r for r in found if r["event"] == "approval"]


@pytest.mark.anyio
@pytest.mark.parametrize("era", ERAS)
async def test_an_approved_call_runs_and_the_question_shows_tool_and_arguments(deployment, tmp_path, era):
    work = deploy(deployment, tmp_path)
    asked = []
    async with deployment.client(mode=era, elicitation_callback=answering("accept", asked=asked)) as client:
        # Not destructive: no question.
        listed = await client.call_tool("list_dir", {"path": "/scratch"})
        assert not listed.is_error and asked == []
        result = await client.call_tool("write_file", WRITE)
        assert not result.is_error, text_of(result)
    assert (work / "out.txt").read_text() == "hello"
    assert len(asked) == 1 and "write_file" in asked[0] and '"/scratch/out.txt"' in asked[0]
    decisions = [r["data"]["decision"] for r in approvals(tmp_path)]
    assert decisions[-1] == "approved"


@pytest.mark.anyio
@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize(
    "action, approve, reason",
    [
        ("decline", True, "the user declined the call of `write_file`"),
        ("cancel", True, "the user cancelled the approval of `write_file`"),
        ("accept", False, "the user did not approve the call of `write_file`"),
    ],
)
async def test_a_refused_approval_never_runs_the_tool(deployment, tmp_path, era, action, approve, reason):
    work = deploy(deployment, tmp_path)
    async with deployment.client(mode=era, elicitation_callback=answering(action, approve)) as client:
        result = await client.call_tool("write_file", WRITE)
        assert result.is_error and reason in text_of(result)
        # The server keeps serving.
        assert not (await client.call_tool("list_dir", {"path": "/scratch"})).is_error
    assert not (work / "out.txt").exists()
    assert approvals(tmp_path)[-1]["data"]["decision"] == "refused"


@pytest.mark.anyio
@pytest.mark.parametrize("era", ERAS)
async def test_a_client_that_cannot_ask_is_refused(deployment, tmp_path, era):
    work = deploy(deployment, tmp_path)
    async with deployment.client(mode=era) as client:
        result = await client.call_tool("write_file", WRITE)
        assert result.is_error and "declared no elicitation capability" in text_of(result)
    assert not (work / "out.txt").exists()


@pytest.mark.anyio
async def test_no_answer_in_time_is_refused(deployment, tmp_path):
    work = deploy(deployment, tmp_path)
    deployment.approval = {"timeout": "1s"}
    async with deployment.client(elicitation_callback=answering("accept", delay=3)) as client:
        result = await client.call_tool("write_file", WRITE)
        assert result.is_error and "no answer to the approval of `write_file` within 1s" in text_of(result)
    assert not (work / "out.txt").exists()


@pytest.mark.anyio
async def test_a_sealed_state_cannot_be_altered_replayed_or_moved(deployment, tmp_path):
    work = deploy(deployment, tmp_path)
    yes = {"approval": {"action": "accept", "content": {"approve": True}}}
    async with deployment.client(mode="2026-07-28", elicitation_callback=answering("accept")) as client:
        session = client.session
        first = await session.call_tool("write_file", WRITE, allow_input_required=True)
        assert isinstance(first, types.InputRequiredResult), first
        state = first.request_state
        assert "approval" in first.input_requests

        async def retry(arguments, request_state):
            return await session.call_tool(
                "write_file", arguments, input_responses=yes, request_state=request_state,
                allow_input_required=True,
            )

        altered = state[:-2] + ("AA" if not state.endswith("AA") else "BB")
        result = await retry(WRITE, altered)
        assert result.is_error and "does not match this call" in text_of(result)
        other = {"path": "/scratch/other.txt", "content": "sneaky"}
        result = await retry(other, state)
        assert result.is_error and "does not match this call" in text_of(result)
        assert not (work / "other.txt").exists()

        result = await retry(WRITE, state)
        assert not result.is_error, text_of(result)
        (work / "out.txt").write_text("changed by a person")
        replayed = await retry(WRITE, state)
        assert replayed.is_error and "already used (a replay)" in text_of(replayed)
    assert (work / "out.txt").read_text() == "changed by a person"


async def call_waiting_for_approval(deployment, answer):
    """Calls write_file in the background, finds its approval id with
    `stockade admin waiting`, runs `answer(id)`; returns the call's result."""
    async with deployment.client() as client:

        async def find_and_answer():
            waiting = ""
            with anyio.fail_after(20):
                while "called by" not in waiting:
                    await anyio.sleep(0.05)
                    waiting = (await anyio.to_thread.run_sync(lambda: run_admin(deployment, "waiting"))).stdout
            approval_id = waiting.split("server pid")[1].split(": ")[1]
            await anyio.to_thread.run_sync(lambda: answer(approval_id))

        return await call_while(client, "write_file", WRITE, find_and_answer)


@pytest.mark.anyio
async def test_out_of_band_approval_needs_a_second_person(deployment, tmp_path):
    work = deploy(deployment, tmp_path)
    deployment.approval = {"out_of_band": True, "timeout": "30s"}
    deployment.stdio = {"client": "desk", "user": "root"}

    def refuse_own_then_deny(approval_id):
        # The caller is `root`, and so is this shell: four eyes say no.
        own = run_admin(deployment, "approve", approval_id)
        assert own.returncode != 0 and "may not approve it (four eyes)" in own.stdout
        denied = run_admin(deployment, "deny", approval_id)
        assert denied.returncode == 0, denied.stdout + denied.stderr

    result = await call_waiting_for_approval(deployment, refuse_own_then_deny)
    assert result.is_error and "denied by local user root" in text_of(result)
    assert not (work / "out.txt").exists()

    # Called by another user: root may approve.
    deployment.stdio = {"client": "desk", "user": "alice"}

    def approve(approval_id):
        done = run_admin(deployment, "approve", approval_id)
        assert done.returncode == 0 and f"approved {approval_id}" in done.stdout, done.stdout

    result = await call_waiting_for_approval(deployment, approve)
    assert not result.is_error, text_of(result)
    assert (work / "out.txt").read_text() == "hello"
    assert any("out_of_band" in json.dumps(r) for r in approvals(tmp_path))


@pytest.mark.anyio
async def test_an_idempotency_key_runs_a_destructive_call_once(deployment, tmp_path):
    work = deploy(deployment, tmp_path, approval="never")
    key = {"io.stockade/idempotency-key": "order-7"}
    async with deployment.client() as client:
        first = await client.call_tool("write_file", WRITE, meta=key)
        assert not first.is_error
        (work / "out.txt").write_text("changed since")
        again = await client.call_tool("write_file", WRITE, meta=key)
        assert text_of(again) == text_of(first)
        assert (work / "out.txt").read_text() == "changed since"
        other = await client.call_tool("write_file", {**WRITE, "content": "other"}, meta=key)
        assert other.is_error and "idempotency key `order-7` was used for `write_file` with other arguments" in text_of(other)
        fresh = await client.call_tool("write_file", WRITE, meta={"io.stockade/idempotency-key": "order-8"})
        assert not fresh.is_error
    assert (work / "out.txt").read_text() == "hello"


@pytest.mark.anyio
@pytest.mark.parametrize("era", ERAS)
async def test_approval_over_http(deployment, tmp_path, era):
    work = deploy(deployment, tmp_path)
    key, entry = api_key("desk", user="ann")
    deployment.auth = {"api_keys": [entry]}
    with HttpStockade(deployment) as server:
        asked = []
        async with mcp_client(server.url, key, era, elicitation_callback=answering("accept", asked=asked)) as client:
            result = await client.call_tool("write_file", WRITE)
            assert not result.is_error, text_of(result)
        async with mcp_client(server.url, key, era, elicitation_callback=answering("decline")) as client:
            result = await client.call_tool("write_file", {**WRITE, "content": "no"})
            assert result.is_error and "declined" in text_of(result)
    assert (work / "out.txt").read_text() == "hello"
    assert len(asked) == 1 and "client `desk` (user `ann`)" in asked[0]
