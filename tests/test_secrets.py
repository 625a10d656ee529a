"""Secrets: read from a real OpenBao at run time, injected by the host into
requests for their bound destination only, and never seen by the tool or the
client, whatever the tool tries."""

from __future__ import annotations

import base64
import json
import time
from urllib.parse import parse_qs, urlparse

import pytest

from conftest import INITIALIZE, INITIALIZED, Deployment, raw_session, text_of, tool_call
from openbao import OpenBao, Proxy, serving
from recording import RecordingServer

pytestmark = pytest.mark.anyio

TOKEN_V1 = "tok-" + "A1b2C3d4E5f6G7h8I9j0"
TOKEN_V2 = "tok-" + "Z9y8X7w6V5u4T3s2R1q0"


@pytest.fixture(scope="module")
def openbao(tmp_path_factory):
    yield from serving(
        tmp_path_factory,
        {"tools/api": {"token": TOKEN_V1}, "private/ops": {"token": "tok-never-readable-by-stockade"}},
    )


class Upstream(RecordingServer):
    """A local HTTP API that requires the bearer token, records what it
    receives, and can echo request headers back (hostile upstream)."""

    def __init__(self):
        self.expected = TOKEN_V1
        super().__init__()

    def record(self, handler, body: bytes) -> dict:
        url = urlparse(handler.path)
        return {
            "path": url.path,
            "query": parse_qs(url.query),
            "headers": {k.lower(): v for k, v in handler.headers.items()},
            "body": body.decode(errors="replace"),
        }

    def respond(self, handler, body: bytes):
        entry = self.seen[-1]
        if entry["path"] == "/api/data":
            if entry["headers"].get("authorization") == f"Bearer {self.expected}":
                handler.reply(200, b'{"rows": [1, 2, 3]}', {"Content-Type": "application/json"})
            else:
                handler.reply(401, b"missing or wrong token")
        elif entry["path"] == "/echo":
            auth = entry["headers"].get("authorization", "")
            echoed = json.dumps(
                {
                    "headers": entry["headers"],
                    "query": entry["query"],
                    "b64": base64.b64encode(auth.encode()).decode(),
                    "hex": auth.encode().hex(),
                }
            ).encode()
            handler.reply(200, echoed, {"X-Echo-Authorization": auth})
        else:
            handler.reply(200, b"ok")


@pytest.fixture
def bound():
    up = Upstream()
    yield up
    up.stop()


@pytest.fixture
def other():
    up = Upstream()
    yield up
    up.stop()


def deploy(deployment: Deployment, vault_url: str, bao: OpenBao, bound: Upstream, other: Upstream, *,
           component="fetch", reference="secret/data/tools/api#token", cache_ttl="1s"):
    egress = {
        "allow": [
            {"url": bound.url, "private": True},
            {"url": other.url, "private": True},
        ]
    }
    deployment.add_tool(
        "api",
        component,
        egress=egress,
        **{
            "secrets.api_token": {
                "vault": reference,
                "destinations": [bound.url],
                "header": "Authorization",
                "format": "Bearer {}",
            }
        },
    )
    deployment.add_tool("text-kit", "text_kit")
    deployment.vault = {
        "address": vault_url,
        "auth": "approle",
        "role_id_file": str(bao.role_id_file),
        "secret_id_file": str(bao.secret_id_file),
        "cache_ttl": cache_ttl,
        "timeout": "2s",
    }


def no_secret_in(*texts: str):
    for text in texts:
        for token in (TOKEN_V1, TOKEN_V2):
            assert token not in text
            assert base64.b64encode(token.encode()).decode() not in text
            assert token.encode().hex() not in text


async def test_injects_the_token_for_the_bound_host_only(deployment, openbao, bound, other):
    deploy(deployment, openbao.url, openbao, bound, other)
    async with deployment.client() as client:
        data = await client.call_tool("fetch", {"url": f"{bound.url}/api/data"})
        elsewhere = await client.call_tool("fetch", {"url": f"{other.url}/api/data"})
    assert not data.is_error, text_of(data)
    assert json.loads(text_of(data)) == {"rows": [1, 2, 3]}
    assert bound.seen[-1]["headers"]["authorization"] == f"Bearer {TOKEN_V1}"
    # The other allowlisted host never receives the credential.
    assert elsewhere.is_error
    assert all("authorization" not in s["headers"] for s in other.seen)
    no_secret_in(text_of(data), text_of(elsewhere))


async def test_an_echoing_upstream_cannot_hand_the_token_back(deployment, openbao, bound, other):
    deploy(deployment, openbao.url, openbao, bound, other, component="hostile_secret_thief")
    async with deployment.client() as client:
        echoed = await client.call_tool("echo", {"url": f"{bound.url}/echo"})
    assert bound.seen[-1]["headers"]["authorization"] == f"Bearer {TOKEN_V1}"
    assert "[redacted]" in text_of(echoed)
    no_secret_in(text_of(echoed))


async def test_placeholders_are_refused_wherever_they_appear(deployment, openbao, bound, other):
    deploy(deployment, openbao.url, openbao, bound, other, component="hostile_secret_thief")
    async with deployment.client() as client:
        to_other = await client.call_tool("placeholder_header", {"url": f"{other.url}/x", "secret": "api_token"})
        in_url = await client.call_tool("placeholder_url", {"url": f"{bound.url}/x", "secret": "api_token"})
        in_body = await client.call_tool("placeholder_body", {"url": f"{bound.url}/x", "secret": "api_token"})
        to_bound = await client.call_tool("placeholder_header", {"url": f"{bound.url}/x", "secret": "api_token"})
        after = await client.call_tool("echo", {"url": f"{bound.url}/api/data"})
    for result, place in ((to_other, "header `x-stolen`"), (in_url, "the URL"), (in_body, "the request body"),
                          (to_bound, "header `x-stolen`")):
        assert result.is_error, text_of(result)
        assert f"secret `api_token`: a placeholder in {place} is never substituted" in text_of(result)
    # Nothing left the host until the ordinary request, which carries the
    # credential only where the manifest places it.
    assert other.seen == []
    assert [s["path"] for s in bound.seen] == ["/api/data"]
    assert "x-stolen" not in bound.seen[0]["headers"]
    assert not after.is_error
    no_secret_in(text_of(to_other), text_of(in_url), text_of(in_body), text_of(to_bound))


async def test_the_tool_finds_nothing_in_its_environment_or_files(deployment, openbao, bound, other):
    deploy(deployment, openbao.url, openbao, bound, other, component="hostile_secret_thief")
    async with deployment.client() as client:
        warm = await client.call_tool("echo", {"url": f"{bound.url}/api/data"})
        found = await client.call_tool("search_ambient", {})
    assert not warm.is_error
    no_secret_in(text_of(found))
    assert openbao.root not in text_of(found)
    assert openbao.secret_id_file.read_text() not in text_of(found)


async def test_rotation_takes_effect_without_a_restart(deployment, openbao, bound, other):
    deploy(deployment, openbao.url, openbao, bound, other)
    try:
        async with deployment.client() as client:
            first = await client.call_tool("fetch", {"url": f"{bound.url}/api/data"})
            openbao.put("tools/api", token=TOKEN_V2)
            bound.expected = TOKEN_V2
            time.sleep(1.5)  # the configured cache_ttl is 1s
            second = await client.call_tool("fetch", {"url": f"{bound.url}/api/data"})
    finally:
        openbao.put("tools/api", token=TOKEN_V1)
    assert not first.is_error and not second.is_error, text_of(second)
    assert bound.seen[0]["headers"]["authorization"] == f"Bearer {TOKEN_V1}"
    assert bound.seen[-1]["headers"]["authorization"] == f"Bearer {TOKEN_V2}"
    no_secret_in(text_of(first), text_of(second))


async def test_starts_while_vault_is_down_fails_closed_and_recovers(deployment, openbao, bound, other):
    proxy = Proxy(openbao.port)
    proxy.stop()
    deploy(deployment, proxy.url, openbao, bound, other)
    try:
        async with deployment.client() as client:
            down = await client.call_tool("fetch", {"url": f"{bound.url}/api/data"})
            unaffected = await client.call_tool("transform", {"text": "fine", "op": "upper"})
            proxy.start()
            back = await client.call_tool("fetch", {"url": f"{bound.url}/api/data"})
            proxy.stop()
            time.sleep(1.5)
            down_again = await client.call_tool("fetch", {"url": f"{bound.url}/api/data"})
    finally:
        proxy.stop()
    assert down.is_error
    assert "secret `api_token` is unavailable: the secret store is unreachable" in text_of(down)
    assert "secret/" not in text_of(down) and "127.0.0.1" not in text_of(down).split("unavailable")[1]
    assert text_of(unaffected) == "FINE"
    assert not back.is_error, text_of(back)
    assert down_again.is_error and "unreachable" in text_of(down_again)
    # Nothing reached the upstream while the secret was unavailable.
    assert len([s for s in bound.seen if s["path"] == "/api/data"]) == 1


async def test_missing_and_denied_secrets_fail_closed(deployment, openbao, bound, other, tmp_path):
    deploy(deployment, openbao.url, openbao, bound, other, reference="secret/data/tools/api#nope")
    async with deployment.client() as client:
        missing = await client.call_tool("fetch", {"url": f"{bound.url}/api/data"})
    other_deployment = Deployment(tmp_path / "denied")
    other_deployment.dir.mkdir()
    deploy(other_deployment, openbao.url, openbao, bound, other, reference="secret/data/private/ops#token")
    async with other_deployment.client() as client:
        denied = await client.call_tool("fetch", {"url": f"{bound.url}/api/data"})
        after = await client.call_tool("transform", {"text": "ok", "op": "upper"})
    assert missing.is_error and "not found in the secret store" in text_of(missing)
    assert denied.is_error and "permission denied by the secret store" in text_of(denied)
    assert "private/ops" not in text_of(denied)
    assert text_of(after) == "OK"
    assert bound.seen == []


def test_the_token_never_reaches_the_log(deployment, openbao, bound, other):
    deploy(deployment, openbao.url, openbao, bound, other, component="hostile_secret_thief")
    messages = [
        INITIALIZE,
        INITIALIZED,
        tool_call(2, "echo", {"url": f"{bound.url}/echo"}),
        tool_call(3, "placeholder_header", {"url": f"{bound.url}/echo", "secret": "api_token"}),
    ]
    replies, proc = raw_session(deployment.write(), messages, env={"STOCKADE_LOG": "trace"})
    assert {r.get("id") for r in replies} == {1, 2, 3}
    # The echo carried the credential (so the log had a chance to see it).
    assert f"Bearer {TOKEN_V1}" in [s["headers"].get("authorization") for s in bound.seen]
    no_secret_in(proc.stdout, proc.stderr)


def test_a_literal_credential_in_a_manifest_is_refused_naming_the_key(deployment, bound, other):
    deployment.add_tool(
        "api",
        "fetch",
        egress={"allow": [{"url": bound.url, "private": True}]},
        **{"secrets.api_token": {"vault": "secret/data/tools/api#token", "destinations": [bound.url],
                                 "header": "Authorization", "token": "hvs.CAESIJ3x9sQ2rT7yZk1mN0pLw"}},
    )
    result = deployment.check()
    assert result.returncode != 0
    assert "secrets.api_token.token" in result.stdout
    assert "literal credential" in result.stdout
    assert "hvs.CAESIJ3x9sQ2rT7yZk1mN0pLw" not in result.stdout


def test_secrets_without_a_store_refuse_that_tool_only(deployment, bound, other):
    deployment.add_tool(
        "api",
        "fetch",
        egress={"allow": [{"url": bound.url, "private": True}]},
        **{"secrets.api_token": {"vault": "secret/data/tools/api#token", "destinations": [bound.url],
                                 "header": "Authorization", "format": "Bearer {}"}},
    )
    deployment.add_tool("text-kit", "text_kit")
    result = deployment.check()
    assert result.returncode != 0
    assert "no secret store is configured" in result.stdout
    assert "transform" in result.stdout


def test_a_destination_not_on_the_allowlist_is_refused(deployment, bound, other):
    deployment.add_tool(
        "api",
        "fetch",
        egress={"allow": [{"url": bound.url, "private": True}]},
        **{"secrets.api_token": {"vault": "secret/data/tools/api#token", "destinations": [other.url],
                                 "header": "Authorization"}},
    )
    result = deployment.check()
    assert result.returncode != 0
    assert "secrets.api_token.destinations[0]" in result.stdout


def test_a_short_lived_token_is_renewed_before_it_expires(deployment, openbao, bound, other, tmp_path):
    import subprocess

    from conftest import BINARY

    openbao.bao("write", "auth/approle/role/shortlived", "token_policies=stockade-tools",
                "token_ttl=3s", "token_max_ttl=1h")
    role_id = tmp_path / "short-role-id"
    secret_id = tmp_path / "short-secret-id"
    role_id.write_text(openbao.bao("read", "-field=role_id", "auth/approle/role/shortlived/role-id"))
    secret_id.write_text(openbao.bao("write", "-f", "-field=secret_id", "auth/approle/role/shortlived/secret-id"))
    deploy(deployment, openbao.url, openbao, bound, other)
    deployment.vault["role_id_file"] = str(role_id)
    deployment.vault["secret_id_file"] = str(secret_id)
    proc = subprocess.Popen(
        [str(BINARY), "serve", "--config", str(deployment.write())],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={"STOCKADE_LOG": "info,stockade::secrets=debug"},
    )
    init = {"jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}}
    proc.stdin.write(json.dumps(init) + "\n" + json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}) + "\n")
    proc.stdin.flush()
    replies = [json.loads(proc.stdout.readline())]
    for i in range(1, 5):
        call = {"jsonrpc": "2.0", "id": i, "method": "tools/call",
                "params": {"name": "fetch", "arguments": {"url": f"{bound.url}/api/data"}}}
        proc.stdin.write(json.dumps(call) + "\n")
        proc.stdin.flush()
        replies.append(json.loads(proc.stdout.readline()))
        time.sleep(1.6)  # four calls span more than two 3-second token lifetimes
    proc.stdin.close()
    stderr = proc.stderr.read()
    proc.wait(timeout=30)
    results = [r["result"] for r in replies[1:]]
    assert all(not r.get("isError") for r in results), results
    assert "vault token renewed" in stderr, stderr
    no_secret_in(stderr)
