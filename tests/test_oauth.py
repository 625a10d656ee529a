"""Stockade as an OAuth 2.1 resource server: tokens from a real
authorization server (oidc-provider) are accepted and its key rotation is
followed; every forged, expired, future-dated, misdirected or wrongly
scoped token is refused with the right challenge and learns nothing."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from conftest import text_of
from httpserve import INITIALIZE, AuthServer, HttpStockade, Issuer, b64url, mcp_client, post

pytestmark = pytest.mark.anyio

# Names that would give the tools away ("ok" is a tool too, but a word
# every body may hold).
TOOL_NAMES = ["transform", "stats", "json_pick", "spin"]


@pytest.fixture
def issuer():
    issuer = Issuer()
    yield issuer
    issuer.close()


@pytest.fixture
def guarded(deployment, issuer):
    """text-kit for analysts with scope tools:read; the cpu tools for ops."""
    deployment.add_tool("text-kit", "text_kit", access={"groups": ["analysts"], "scopes": ["tools:read"]})
    deployment.add_tool("ops-tools", "hostile_resource_cpu", access={"groups": ["ops"]})
    deployment.auth = {"oauth": {"issuer": issuer.url, "leeway": "5s", "jwks_refresh": "1s",
                                 "scopes_supported": ["tools:read", "tools:files"]}}
    with HttpStockade(deployment) as server:
        yield server


def forged_variants(issuer: Issuer, audience: str) -> dict[str, str]:
    """Tokens that must all be refused, by what is wrong with them."""
    now = int(time.time())
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    attacker_jwk = issuer.public_jwk(attacker, kid="attacker")
    claims = issuer.claims(audience)

    def unsigned(header: dict, body: dict, signature: bytes = b"") -> str:
        return ".".join([b64url(json.dumps(header).encode()), b64url(json.dumps(body).encode()), b64url(signature)])

    def hmac_signed(header: dict, body: dict, secret: bytes) -> str:
        # The classic confusion: the issuer's public key used as an HMAC secret.
        signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(body).encode())
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        return signing_input + "." + b64url(mac)

    return {
        "expired": issuer.token(audience, exp=now - 60, iat=now - 400, nbf=now - 400),
        "not-yet-valid": issuer.token(audience, nbf=now + 120),
        "issued-in-the-future": issuer.token(audience, iat=now + 120),
        "no-expiry": issuer.token(audience, exp=None),
        "other-issuer": issuer.token(audience, iss="http://127.0.0.1:1"),
        "other-audience": issuer.token(audience, aud="http://127.0.0.1:1/mcp"),
        "audience-prefix": issuer.token(audience, aud=audience + "/extra"),
        "no-audience": issuer.token(audience, aud=None),
        "alg-none": unsigned({"alg": "none", "typ": "at+jwt", "kid": issuer.kid}, claims),
        "hmac-with-the-public-key": hmac_signed({"alg": "HS256", "typ": "at+jwt", "kid": issuer.kid}, claims,
                                               issuer.public_pem()),
        "signed-by-another-key": issuer.token(audience, key=attacker),
        "unknown-kid": issuer.token(audience, key=attacker, headers={"kid": "attacker"}),
        "embedded-jwk": issuer.token(audience, key=attacker, headers={"kid": "attacker", "jwk": attacker_jwk}),
        "embedded-jwk-under-the-issuer-kid": issuer.token(audience, key=attacker, headers={"jwk": attacker_jwk}),
        "jku-to-attacker": issuer.token(audience, key=attacker,
                                        headers={"kid": "attacker", "jku": f"{issuer.url}/attacker-jwks"}),
        "x5u-to-attacker": issuer.token(audience, key=attacker,
                                        headers={"kid": "attacker", "x5u": f"{issuer.url}/attacker-cert"}),
        "crit-header": issuer.token(audience, headers={"crit": ["exp"], "exp": now + 300}),
        "id-token-type": issuer.token(audience, headers={"typ": "JWT"}),
        "tampered-payload": (lambda t: t.split(".")[0] + "." + b64url(json.dumps({**claims, "groups": ["ops"]}).encode())
                             + "." + t.split(".")[2])(issuer.token(audience)),
        "garbage": "not.a.token",
    }


# Why each is refused, as the server's log says (never the client).
REASONS = {
    "expired": "ExpiredSignature",
    "not-yet-valid": "ImmatureSignature",
    "issued-in-the-future": "issued in the future",
    "no-expiry": "Missing required claim: exp",
    "other-issuer": "InvalidIssuer",
    "other-audience": "InvalidAudience",
    "audience-prefix": "InvalidAudience",
    "no-audience": "Missing required claim: aud",
    "alg-none": "unknown variant `none`",
    "hmac-with-the-public-key": "algorithm HS256 is not in oauth.algorithms",
    "signed-by-another-key": "InvalidSignature",
    "unknown-kid": "no key of the issuer has id",
    "embedded-jwk": "no key of the issuer has id",
    "embedded-jwk-under-the-issuer-kid": "InvalidSignature",
    "jku-to-attacker": "no key of the issuer has id",
    "x5u-to-attacker": "no key of the issuer has id",
    "crit-header": "critical header extensions",
    "id-token-type": "not in oauth.token_types",
    "tampered-payload": "InvalidSignature",
    "garbage": "malformed token",
}


def test_a_valid_token_names_the_caller_and_its_groups_and_scopes_choose_the_tools(guarded, issuer):
    token = issuer.token(guarded.url)

    async def session():
        async with mcp_client(guarded.url, token, "2026-07-28") as client:
            names = {t.name for t in (await client.list_tools()).tools}
            result = await client.call_tool("transform", {"text": "jwt", "op": "upper"})
            return names, result

    names, result = asyncio.run(session())
    assert "transform" in names and "spin" not in names
    assert text_of(result) == "JWT"
    call = [r for r in guarded.audit() if r["event"] == "call_finished"][-1]
    assert (call["client"], call["user"]) == ("agent-x", "ann")


def test_every_forged_or_misdirected_token_is_refused_and_learns_nothing(guarded, issuer):
    refused = {}
    for name, token in forged_variants(issuer, guarded.url).items():
        response = post(guarded.url, INITIALIZE, token=token)
        challenge = response.headers.get("www-authenticate", "")
        refused[name] = (response.status_code, 'error="invalid_token"' in challenge,
                         'resource_metadata="' in challenge,
                         any(t in response.text + challenge for t in TOOL_NAMES))
    wrong = {name: r for name, r in refused.items() if r != (401, True, True, False)}
    assert wrong == {}, wrong
    guarded.wait_for("request refused: ", count=len(REASONS))
    reasons = [line.split("request refused: ", 1)[1] for line in guarded.lines if "request refused: " in line]
    assert len(reasons) == len(REASONS)
    misjudged = {name: why for name, why in zip(refused, reasons) if REASONS[name] not in why}
    assert misjudged == {}, misjudged
    # Nothing in a token's header was ever fetched.
    assert not [hit for hit in issuer.hits if "attacker" in hit]
    records = guarded.audit()
    assert {r["event"] for r in records} == {"config_loaded", "auth_failed"}
    failed = [r for r in records if r["event"] == "auth_failed"]
    assert len(failed) == len(REASONS) and all(r["error_class"] == "invalid_token" for r in failed)
    # And the server still serves a good token.
    assert post(guarded.url, INITIALIZE, token=issuer.token(guarded.url)).status_code == 200


def test_an_oversized_token_is_refused_without_being_parsed(guarded, issuer):
    token = issuer.token(guarded.url, padding="p" * 9000)
    response = post(guarded.url, INITIALIZE, token=token)
    assert response.status_code == 401
    assert "token larger than auth.max_token" in guarded.wait_for("token larger than auth.max_token")


def test_a_token_without_a_required_scope_gets_403_naming_it(deployment, issuer):
    deployment.add_tool("text-kit", "text_kit")
    deployment.auth = {"required_scopes": ["mcp:use"], "oauth": {"issuer": issuer.url}}
    with HttpStockade(deployment) as server:
        lacking = post(server.url, INITIALIZE, token=issuer.token(server.url, scope="tools:read"))
        holding = post(server.url, INITIALIZE, token=issuer.token(server.url, scope="tools:read mcp:use"))
        missing = post(server.url, INITIALIZE)
    assert lacking.status_code == 403
    assert 'error="insufficient_scope"' in lacking.headers["www-authenticate"]
    assert 'scope="mcp:use"' in lacking.headers["www-authenticate"]
    assert holding.status_code == 200
    # The challenge to an anonymous client names the scope to ask for.
    assert 'scope="mcp:use"' in missing.headers["www-authenticate"]


def test_a_tool_needing_a_scope_is_hidden_from_a_token_without_it(guarded, issuer):
    token = issuer.token(guarded.url, scope="tools:files")

    async def names():
        async with mcp_client(guarded.url, token, "legacy") as client:
            return {t.name for t in (await client.list_tools()).tools}

    assert "transform" not in asyncio.run(names())


def test_metadata_names_the_authorization_server_and_scopes(guarded, issuer):
    import httpx2

    meta = httpx2.get(guarded.base + "/.well-known/oauth-protected-resource/mcp").json()
    assert meta["resource"] == guarded.url
    assert meta["authorization_servers"] == [issuer.url]
    assert meta["scopes_supported"] == ["tools:read", "tools:files"]


@pytest.fixture
def authserver():
    server = AuthServer(kid="k1")
    yield server
    server.stop()


def test_tokens_from_a_real_authorization_server_work_and_its_key_rotation_is_followed(deployment, authserver):
    deployment.add_tool("text-kit", "text_kit", access={"groups": ["analysts"]})
    deployment.add_tool("ops-tools", "hostile_resource_cpu", access={"groups": ["ops"]})
    deployment.auth = {"oauth": {"issuer": authserver.url, "jwks_refresh": "1s"}}
    with HttpStockade(deployment) as server:

        async def names(token, mode):
            async with mcp_client(server.url, token, mode) as client:
                return {t.name for t in (await client.list_tools()).tools}

        a = authserver.token("agent-a", server.url)
        b = authserver.token("agent-b", server.url)
        assert "transform" in asyncio.run(names(a, "legacy")) and "spin" not in asyncio.run(names(a, "2026-07-28"))
        assert "spin" in asyncio.run(names(b, "legacy")) and "transform" not in asyncio.run(names(b, "2026-07-28"))
        # A token the same server issued for another resource is refused.
        elsewhere = authserver.token("agent-a", "http://127.0.0.1:1/mcp")
        assert post(server.url, INITIALIZE, token=elsewhere).status_code == 401
        # Rotation: the server restarts with a new key; its new tokens are
        # accepted once Stockade fetches the new key set, the old key's are not.
        authserver.stop()
        rotated = AuthServer(port=authserver.port, kid="k2")
        try:
            time.sleep(1.2)
            fresh = rotated.token("agent-a", server.url)
            assert jwt.get_unverified_header(fresh)["kid"] == "k2"
            assert "transform" in asyncio.run(names(fresh, "legacy"))
            assert post(server.url, INITIALIZE, token=a).status_code == 401
        finally:
            rotated.stop()
        server.settle()
        log = server.log
    assert a not in log and b not in log, "a client's token reached the log"


def test_mcp_authlab_grades_the_resource_server_a(deployment, authserver):
    import subprocess
    import sys
    from pathlib import Path

    deployment.add_tool("text-kit", "text_kit", access={"scopes": ["tools:read"]})
    deployment.auth = {"oauth": {"issuer": authserver.url, "scopes_supported": ["tools:read", "tools:files"]}}
    with HttpStockade(deployment) as server:
        token = authserver.token("agent-a", server.url)
        foreign = authserver.token("agent-a", "http://127.0.0.1:1/mcp")
        scan = subprocess.run(
            [str(Path(sys.executable).parent / "mcp-authlab"), "scan", server.url, "--token", token,
             "--foreign-token", foreign, "--no-login", "--format", "json", "--fail-under", "A"],
            capture_output=True, text=True, timeout=300,
        )
    report = json.loads(scan.stdout)
    failed = [r for r in report["results"] if r.get("status") == "fail"]
    assert scan.returncode == 0, scan.stderr
    assert report["grade"] == "A" and report["critical_failures"] == [] and report["must_failures"] == []
    assert failed == [], failed


def test_a_remembered_token_is_refused_once_it_expires(deployment, issuer):
    deployment.add_tool("text-kit", "text_kit")
    deployment.auth = {"oauth": {"issuer": issuer.url, "leeway": "0s"}}
    with HttpStockade(deployment) as server:
        token = issuer.token(server.url, exp=int(time.time()) + 2)
        first = post(server.url, INITIALIZE, token=token)
        again = post(server.url, INITIALIZE, token=token)
        time.sleep(3)
        expired = post(server.url, INITIALIZE, token=token)
    assert (first.status_code, again.status_code, expired.status_code) == (200, 200, 401)


def test_opaque_tokens_are_checked_by_introspection(deployment, tmp_path):
    server_as = AuthServer(opaque=True)
    try:
        secret = tmp_path / "introspection-secret"
        secret.write_text("resource-server-secret\n")
        deployment.add_tool("text-kit", "text_kit", access={"groups": ["analysts"]})
        deployment.auth = {"oauth": {
            "issuer": server_as.url,
            "introspection_endpoint": f"{server_as.url}/token/introspection",
            "introspection_client": "resource-server",
            "introspection_secret_file": str(secret),
        }}
        with HttpStockade(deployment) as server:
            token = server_as.token("agent-a", server.url)
            elsewhere = server_as.token("agent-a", "http://127.0.0.1:1/mcp")
            other_group = server_as.token("agent-b", server.url)
            assert "." not in token, "the authorization server issued a JWT, not an opaque token"

            async def names(t):
                async with mcp_client(server.url, t, "2026-07-28") as client:
                    return {tool.name for tool in (await client.list_tools()).tools}

            assert "transform" in asyncio.run(names(token))
            assert "transform" not in asyncio.run(names(other_group))
            misdirected = post(server.url, INITIALIZE, token=elsewhere)
            made_up = post(server.url, INITIALIZE, token="x" * 43)
            log = server.wait_for("introspection: the token is not active")
        assert misdirected.status_code == made_up.status_code == 401
        assert "introspection: not meant for this server (aud)" in log
        assert "introspection: the token is not active" in log
        assert token not in log
    finally:
        server_as.stop()


def test_introspection_settings_come_together(deployment):
    deployment.add_tool("text-kit", "text_kit")
    deployment.auth = {"oauth": {"issuer": "https://as.example", "introspection_endpoint": "https://as.example/i"}}
    checked = deployment.check()
    assert checked.returncode != 0
    assert "auth.oauth.introspection_endpoint" in checked.stderr and "together" in checked.stderr
