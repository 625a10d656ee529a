"""MCP over Streamable HTTP with API keys: real clients in both eras, and
every way an unauthenticated or wrongly authenticated request is refused
without learning anything about the tools."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import time

import httpx2
import pytest

from conftest import BINARY, ERAS, text_of
from httpserve import INITIALIZE, HttpStockade, api_key, mcp_client, post, sse_json

pytestmark = pytest.mark.anyio

TOOL_NAMES = ["transform", "stats", "json_pick", "list_dir", "read_file", "search_files", "write_file", "fetch"]


def leaks_a_tool(response: httpx2.Response) -> list[str]:
    text = response.text + json.dumps(dict(response.headers))
    return [name for name in TOOL_NAMES if name in text]


@pytest.fixture
def served(examples_deployment):
    key, entry = api_key("desk", user="ann", groups=["analysts"])
    examples_deployment.auth = {"api_keys": [entry]}
    with HttpStockade(examples_deployment) as server:
        server.key = key
        yield server


@pytest.mark.parametrize("mode", ERAS)
async def test_the_python_client_lists_and_calls_every_example_tool(served, examples_deployment, mode):
    async with mcp_client(served.url, served.key, mode) as client:
        listed = sorted(t.name for t in (await client.list_tools()).tools)
        slug = await client.call_tool("transform", {"text": "Hello, HTTP World!", "op": "slug"})
        stats = await client.call_tool("stats", {"text": "one two\nthree"})
        picked = await client.call_tool("json_pick", {"json": '{"a": [10, 20]}', "pointer": "/a/1"})
        listing = await client.call_tool("list_dir", {"path": "/data"})
        read = await client.call_tool("read_file", {"path": "/data/notes/plan.txt"})
        found = await client.call_tool("search_files", {"path": "/data", "pattern": "needle"})
        wrote = await client.call_tool("write_file", {"path": "/scratch/out.txt", "content": mode})
        fetched = await client.call_tool("fetch", {"url": "http://127.0.0.2:9/"})
    assert listed == sorted(TOOL_NAMES)
    assert text_of(slug) == "hello-http-world"
    assert not stats.is_error and text_of(picked) == "20"
    assert [e["name"] for e in listing.structured_content["entries"]] == ["README.txt", "notes"]
    assert "needle in a haystack" in text_of(read) and "plan.txt:2" in text_of(found)
    assert not wrote.is_error and (examples_deployment.dir / "work" / "out.txt").read_text() == mode
    assert fetched.is_error and "egress denied" in text_of(fetched)
    # Every record of these calls names the authenticated caller.
    calls = [r for r in served.audit() if r["event"] == "call_finished"]
    assert calls and all(r["client"] == "desk" and r["user"] == "ann" for r in calls)


DISCOVER = {"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}}}
LIST = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {"_meta": {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}}}
LIST_HEADERS = {"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/list"}


def test_without_credentials_nothing_is_served_and_nothing_named(served):
    answers = [
        post(served.url, INITIALIZE),
        post(served.url, DISCOVER, headers={"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "server/discover"}),
        post(served.url, LIST, headers=LIST_HEADERS),
        httpx2.get(served.url, headers={"Accept": "text/event-stream"}),
        httpx2.delete(served.url, headers={"Mcp-Session-Id": "guess"}),
    ]
    for response in answers:
        assert response.status_code == 401, response.text
        challenge = response.headers["www-authenticate"]
        assert challenge.startswith('Bearer resource_metadata="') and "/.well-known/oauth-protected-resource/mcp" in challenge
        assert "error=" not in challenge
        assert leaks_a_tool(response) == []
        assert "mcp-session-id" not in response.headers
    # Nothing reached the call path: no listing, no call in the audit;
    # every refusal is an audit record of its own.
    records = served.audit()
    refused = [r for r in records if r["event"] == "auth_failed"]
    assert {r["event"] for r in records} == {"config_loaded", "auth_failed"}
    assert len(refused) == len(answers)
    assert {(r["outcome"], r["error_class"]) for r in refused} == {("denied", "no_credentials")}
    assert all(r["data"]["peer"].startswith("127.0.0.1:") for r in refused)


@pytest.mark.parametrize(
    "headers, status, error",
    [
        ({"Authorization": "Bearer stk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}, 401, "invalid_token"),
        ({"Authorization": "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."}, 401, "invalid_token"),
        ({"Authorization": "Basic ZGVzazpzZWNyZXQ="}, 400, "invalid_request"),
        ({"Authorization": "Bearer " + "a" * 20000}, 401, "invalid_token"),
    ],
    ids=["unknown-key", "alg-none-without-issuer", "basic-scheme", "oversized"],
)
def test_a_bad_credential_is_refused_with_its_error_code(served, headers, status, error):
    response = post(served.url, INITIALIZE, headers=headers)
    assert response.status_code == status
    assert f'error="{error}"' in response.headers["www-authenticate"]
    assert response.json()["error"] == error
    assert leaks_a_tool(response) == []


def test_a_truncated_or_doubled_key_and_a_key_in_the_query_are_refused(served):
    truncated = post(served.url, INITIALIZE, token=served.key[:-1])
    in_query = post(served.url + "?access_token=" + served.key, INITIALIZE)
    both = httpx2.post(served.url, content=json.dumps(INITIALIZE), headers=[
        ("Content-Type", "application/json"), ("Accept", "application/json, text/event-stream"),
        ("Authorization", f"Bearer {served.key}"), ("Authorization", f"Bearer {served.key}")])
    assert truncated.status_code == 401
    assert in_query.status_code == 400 and "Authorization header" in in_query.json()["error_description"]
    assert both.status_code == 400
    # The right key still works afterwards.
    assert post(served.url, INITIALIZE, token=served.key).status_code == 200


def test_metadata_and_health_answer_without_credentials_and_name_no_tool(served):
    for path in ["/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"]:
        meta = httpx2.get(served.base + path)
        assert meta.status_code == 200
        assert meta.json()["resource"] == served.url
        assert meta.json()["bearer_methods_supported"] == ["header"]
        assert leaks_a_tool(meta) == []
    assert httpx2.get(served.base + "/.well-known/oauth-protected-resource/other").status_code == 404
    health = httpx2.get(served.base + "/healthz")
    ready = httpx2.get(served.base + "/readyz")
    assert (health.status_code, ready.status_code) == (200, 200)
    assert leaks_a_tool(health) == leaks_a_tool(ready) == []
    assert httpx2.get(served.base + "/anything").status_code == 404


def test_a_foreign_origin_or_host_is_refused_before_authentication(served):
    origin = post(served.url, INITIALIZE, token=served.key, headers={"Origin": "http://evil.example"})
    host = post(served.url, INITIALIZE, token=served.key, headers={"Host": "evil.example"})
    assert origin.status_code == 403 and "http.allowed_origins" in origin.text
    assert host.status_code == 403 and "http.allowed_hosts" in host.text
    assert post(served.url, INITIALIZE, token=served.key).status_code == 200


def test_an_allowed_origin_passes(examples_deployment):
    key, entry = api_key("web", groups=["analysts"])
    examples_deployment.auth = {"api_keys": [entry]}
    examples_deployment.http = {"allowed_origins": ["http://app.example:3000"]}
    with HttpStockade(examples_deployment) as server:
        allowed = post(server.url, INITIALIZE, token=key, headers={"Origin": "http://app.example:3000"})
        other_port = post(server.url, INITIALIZE, token=key, headers={"Origin": "http://app.example:3001"})
        own = post(server.url, INITIALIZE, token=key, headers={"Origin": server.base})
        own_over_https = post(server.url, INITIALIZE, token=key, headers={"Origin": server.base.replace("http:", "https:")})
    assert allowed.status_code == 200
    assert other_port.status_code == 403
    # The server's own origin is same-origin; the same host under another
    # scheme is not.
    assert own.status_code == 200
    assert own_over_https.status_code == 403


def open_session(url: str, token: str) -> str:
    opened = post(url, INITIALIZE, token=token)
    assert opened.status_code == 200, opened.text
    session = opened.headers["mcp-session-id"]
    headers = {"Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-11-25"}
    done = post(url, {"jsonrpc": "2.0", "method": "notifications/initialized"}, token=token, headers=headers)
    assert done.status_code == 202, done.text
    return session


def test_a_session_presented_by_another_caller_is_refused_as_unknown(examples_deployment):
    ann, ann_entry = api_key("desk", user="ann", groups=["analysts"])
    bob, bob_entry = api_key("desk", user="bob", groups=["analysts"])
    examples_deployment.auth = {"api_keys": [ann_entry, bob_entry]}
    list_call = {"jsonrpc": "2.0", "id": 5, "method": "tools/list", "params": {}}
    with HttpStockade(examples_deployment) as server:
        session = open_session(server.url, ann)
        headers = {"Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-11-25"}
        stolen = post(server.url, list_call, token=bob, headers=headers)
        unknown = post(server.url, list_call, token=bob, headers={**headers, "Mcp-Session-Id": "no-such-session"})
        unauthenticated = post(server.url, list_call, headers=headers)
        own = post(server.url, list_call, token=ann, headers=headers)
        log = server.wait_for("a session opened by another caller was presented")
    assert stolen.status_code == unknown.status_code == 404
    assert stolen.text == unknown.text and leaks_a_tool(stolen) == []
    assert unauthenticated.status_code == 401
    assert own.status_code == 200 and "transform" in own.text
    assert "a session opened by another caller was presented" in log


def test_two_callers_at_once_see_and_call_only_their_own_tools(deployment):
    deployment.add_tool("text-kit", "text_kit", access={"groups": ["analysts"]})
    deployment.add_tool("ops-tools", "hostile_resource_cpu", access={"groups": ["ops"]})
    ann, ann_entry = api_key("desk", user="ann", groups=["analysts"])
    oz, oz_entry = api_key("runner", user="oz", groups=["ops"])
    deployment.auth = {"api_keys": [ann_entry, oz_entry]}

    async def session(token, mode, own, other, arguments):
        async with mcp_client(server.url, token, mode) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            mine = await client.call_tool(own, arguments)
            with pytest.raises(Exception) as refused:
                await client.call_tool(other, {})
        return names, mine, str(refused.value)

    async def both(mode):
        return await asyncio.gather(
            session(ann, mode, "transform", "ok", {"text": "a", "op": "upper"}),
            session(oz, mode, "ok", "transform", {}),
        )

    with HttpStockade(deployment) as server:
        for mode in ERAS:
            (ann_names, ann_call, ann_refusal), (oz_names, oz_call, oz_refusal) = asyncio.run(both(mode))
            assert "transform" in ann_names and "ok" not in ann_names
            assert "ok" in oz_names and "transform" not in oz_names
            assert text_of(ann_call) == "A" and not oz_call.is_error
            assert "unknown tool `ok`" in ann_refusal and "unknown tool `transform`" in oz_refusal
        records = server.audit()
    refused = [r for r in records if r["event"] == "call_denied"]
    assert {(r["user"], r["tool"]) for r in refused} == {("ann", "ok"), ("oz", "transform")}


def test_each_caller_has_its_own_rate_bucket(deployment):
    deployment.add_tool("text-kit", "text_kit", limits={"rate": "2/min"})
    ann, ann_entry = api_key("desk", user="ann")
    bob, bob_entry = api_key("desk", user="bob")
    deployment.auth = {"api_keys": [ann_entry, bob_entry]}

    async def calls(token, n):
        async with mcp_client(server.url, token, "2026-07-28") as client:
            return [await client.call_tool("transform", {"text": "x", "op": "upper"}) for _ in range(n)]

    with HttpStockade(deployment) as server:
        ann_results = asyncio.run(calls(ann, 3))
        bob_results = asyncio.run(calls(bob, 2))
    assert [r.is_error for r in ann_results] == [False, False, True]
    assert "rate limit exceeded for `transform`" in text_of(ann_results[2]) and "retry in" in text_of(ann_results[2])
    assert [r.is_error for r in bob_results] == [False, False]


def test_http_refuses_to_start_in_clear_off_loopback_or_without_authentication(examples_deployment):
    config = examples_deployment.write()
    no_auth = subprocess.run([str(BINARY), "serve", "--config", str(config), "--http", "127.0.0.1:0"],
                             capture_output=True, text=True, timeout=60)
    key, entry = api_key("desk")
    examples_deployment.auth = {"api_keys": [entry]}
    config = examples_deployment.write()
    clear = subprocess.run([str(BINARY), "serve", "--config", str(config), "--http", "0.0.0.0:0"],
                           capture_output=True, text=True, timeout=60)
    dev_key_off_loopback = subprocess.run(
        [str(BINARY), "serve", "--config", str(config), "--http", "0.0.0.0:0", "--dev-api-key"],
        capture_output=True, text=True, timeout=60)
    assert no_auth.returncode != 0 and "without authentication" in no_auth.stderr
    assert clear.returncode != 0 and "[http.tls]" in clear.stderr and "allow_insecure" in clear.stderr
    assert dev_key_off_loopback.returncode != 0 and "loopback" in dev_key_off_loopback.stderr
    for run in (no_auth, clear, dev_key_off_loopback):
        assert "panicked" not in run.stderr


def test_bad_http_and_auth_settings_are_named(examples_deployment):
    examples_deployment.auth = {"api_keys": [{"client": "x", "sha256": "not-hex"}]}
    bad_key = examples_deployment.check()
    examples_deployment.auth = {"oauth": {"issuer": "http://as.example"}}
    clear_issuer = examples_deployment.check()
    examples_deployment.auth = {"oauth": {"issuer": "https://as.example", "algorithms": ["HS256"]}}
    hmac = examples_deployment.check()
    examples_deployment.auth = {}
    examples_deployment.http = {"tls": {"cert_file": "c.pem", "key_file": "k.pem", "client_certs": "required"}}
    required_without_ca = examples_deployment.check()
    assert "auth.api_keys[0].sha256" in bad_key.stdout + bad_key.stderr
    assert "auth.oauth.issuer" in clear_issuer.stderr
    assert "auth.oauth.algorithms" in hmac.stderr and "never none or HMAC" in hmac.stderr
    assert "http.tls.client_certs" in required_without_ca.stderr


def test_the_development_key_serves_the_stdio_identity_and_prints_how_to_connect(examples_deployment):
    examples_deployment.stdio = {"client": "local", "groups": ["analysts"]}
    with HttpStockade(examples_deployment, extra_args=["--dev-api-key"]) as server:
        key = next(line.split(": ")[1].strip() for line in server.lines if "DEVELOPMENT API KEY" in line)
        opened = post(server.url, INITIALIZE, token=key)
        server.settle()
        log = server.log
    assert opened.status_code == 200
    assert f"--header \"Authorization: Bearer {key}\"" in log
    assert f"mcpdo connect {server.url} --header \"Authorization: Bearer {key}\"" in log
    assert '"type": "http"' in log and server.url in log


def spin_call(request_id: int = 7) -> dict:
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": {"name": "spin", "arguments": {}, "_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}}}


SPIN_HEADERS = {"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "spin"}


@pytest.fixture
def spinning(deployment):
    """A tool whose every call runs for its whole 1.5 s timeout."""
    deployment.add_tool("cpu", "hostile_resource_cpu", limits={"timeout": "1500ms", "fuel": 10**12})
    key, entry = api_key("desk")
    deployment.auth = {"api_keys": [entry]}
    deployment.http = {"max_in_flight": 1, "header_timeout": "1s", "max_body": "64KiB"}
    deployment.key = key
    return deployment


def test_past_max_in_flight_a_request_is_told_to_retry_and_the_first_completes(spinning):
    import concurrent.futures

    with HttpStockade(spinning) as server, concurrent.futures.ThreadPoolExecutor(2) as pool:
        first = pool.submit(post, server.url, spin_call(), token=spinning.key, headers=SPIN_HEADERS)
        time.sleep(0.4)
        second = post(server.url, spin_call(8), token=spinning.key, headers=SPIN_HEADERS)
        first = first.result(30)
        after = post(server.url, spin_call(9), token=spinning.key, headers=SPIN_HEADERS)
    assert second.status_code == 503 and second.headers["retry-after"] == "1"
    assert "http.max_in_flight" in second.text
    assert first.status_code == 200 and "timeout" in json.dumps(sse_json(first))
    assert after.status_code == 200


def test_an_over_size_body_and_a_stalled_request_head_are_cut_off(spinning):
    with HttpStockade(spinning) as server:
        big = post(server.url, {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"pad": "x" * 100_000}},
                   token=spinning.key, headers={"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/list"})
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as slow:
            slow.sendall(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            started = time.time()
            closed = slow.recv(1024) is not None
            waited = time.time() - started
        alive = post(server.url, INITIALIZE, token=spinning.key)
    assert big.status_code == 413
    assert closed and waited < 8, "the stalled connection was not closed by http.header_timeout"
    assert alive.status_code == 200


def test_sigterm_lets_a_call_in_flight_finish_then_exits_zero(spinning):
    import concurrent.futures

    server = HttpStockade(spinning)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        call = pool.submit(post, server.url, spin_call(), token=spinning.key, headers=SPIN_HEADERS)
        time.sleep(0.4)
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        with pytest.raises(httpx2.HTTPError):
            post(server.url, INITIALIZE, token=spinning.key)
        answered = call.result(30)
    assert answered.status_code == 200 and "timeout" in json.dumps(sse_json(answered))
    assert server.proc.wait(30) == 0


def test_the_call_depth_of_an_incoming_request_is_honoured(examples_deployment):
    key, entry = api_key("desk", groups=["analysts"])
    examples_deployment.auth = {"api_keys": [entry]}
    call = {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "stats", "arguments": {"text": "a"}, "_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}}}
    headers = {"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "stats"}
    with HttpStockade(examples_deployment) as server:
        deep = sse_json(post(server.url, call, token=key, headers={**headers, "stockade-call-depth": "4"}))
        shallow = sse_json(post(server.url, call, token=key, headers={**headers, "stockade-call-depth": "1"}))
        garbled = post(server.url, call, token=key, headers={**headers, "stockade-call-depth": "x"})
    assert "max_call_depth" in json.dumps(deep)
    assert shallow["result"]["isError"] is False
    assert garbled.status_code == 400


def test_a_caller_at_its_concurrency_limit_is_refused_while_another_is_served(deployment):
    import concurrent.futures

    deployment.add_tool("cpu", "hostile_resource_cpu",
                        limits={"timeout": "1500ms", "fuel": 10**12, "caller_concurrency": 1})
    ann, ann_entry = api_key("desk", user="ann")
    bob, bob_entry = api_key("desk", user="bob")
    deployment.auth = {"api_keys": [ann_entry, bob_entry]}
    deployment.server["caller_concurrency"] = 2
    with HttpStockade(deployment) as server, concurrent.futures.ThreadPoolExecutor(2) as pool:
        first = pool.submit(post, server.url, spin_call(1), token=ann, headers=SPIN_HEADERS)
        time.sleep(0.4)
        bobs = pool.submit(post, server.url, spin_call(2), token=bob, headers=SPIN_HEADERS)
        second = sse_json(post(server.url, spin_call(3), token=ann, headers=SPIN_HEADERS))
        first, bobs = sse_json(first.result(30)), sse_json(bobs.result(30))
    refusal = json.dumps(second)
    assert "this caller already has 1 calls running (limits.caller_concurrency)" in refusal
    assert "timeout" in json.dumps(first) and "timeout" in json.dumps(bobs)
    assert "already has" not in json.dumps(bobs)


def test_past_max_connections_a_new_connection_is_closed_and_the_server_recovers(examples_deployment):
    key, entry = api_key("desk", groups=["analysts"])
    examples_deployment.auth = {"api_keys": [entry]}
    examples_deployment.http = {"max_connections": 2}
    with HttpStockade(examples_deployment) as server:
        held = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(2)]
        time.sleep(0.3)
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as extra:
            try:
                extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                refused = extra.recv(1024)
            except ConnectionResetError:
                # Closed with the request unread: the kernel resets it.
                refused = b""
        for s in held:
            s.close()
        time.sleep(0.3)
        after = httpx2.get(server.base + "/healthz")
        log = server.wait_for("http.max_connections reached")
    assert refused == b"", "a connection past http.max_connections was served"
    assert after.status_code == 200
    assert "http.max_connections reached; connection closed" in log


@pytest.mark.parametrize("path", ["/%6dcp", "/mcp/", "//mcp", "/./mcp", "/x/../mcp", "/MCP", "/mcp%2f", "/mcp;x",
                                  "/mcp%00", "/.well-known/../mcp", "/healthz/../mcp"])
def test_no_spelling_of_the_endpoint_path_reaches_it_without_credentials(served, path):
    # The raw path is sent as written (no client-side normalisation).
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as raw:
        body = json.dumps(INITIALIZE).encode()
        raw.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{served.port}\r\nContent-Type: application/json\r\n"
            f"Accept: application/json, text/event-stream\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        answer = b""
        while chunk := raw.recv(65536):
            answer += chunk
    status = int(answer.split(b" ", 2)[1])
    assert status in (400, 401, 404), answer[:200]
    assert b"protocolVersion" not in answer and b"mcp-session-id" not in answer.lower()


def test_a_flood_of_bad_credentials_cannot_flood_the_audit(served):
    started = time.monotonic()
    for i in range(60):
        assert post(served.url, INITIALIZE, token=f"stk_wrong{i}").status_code == 401
    elapsed = time.monotonic() - started
    time.sleep(1.2)
    assert post(served.url, INITIALIZE, token="stk_wrong-again").status_code == 401
    served.wait_for('"event":"auth_failed"', count=21)
    failed = [r for r in served.audit() if r["event"] == "auth_failed"]
    # A burst of 20, then 5 a second as the bucket refills; each written
    # record carries the count of those not written before it, so none is
    # lost from the count.
    assert 21 <= len(failed) <= 20 + 5 * (elapsed + 1.5) + 1, (len(failed), elapsed)
    assert len(failed) < 61
    assert sum(1 + r.get("data", {}).get("suppressed", 0) for r in failed) == 61
    assert any(r["data"].get("suppressed") for r in failed)
    # And the server still serves a good key.
    assert post(served.url, INITIALIZE, token=served.key).status_code == 200
