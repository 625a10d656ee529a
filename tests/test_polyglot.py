"""Tools written in Python (componentize-py) and JavaScript (componentize-js)
on the Stockade SDKs: the example tools work end to end through the real
binary, and the hostile corpus, rewritten in both languages, is stopped by
the same limits and grants as the Rust one, each refusal naming its rule,
with a benign call right after.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from conftest import text_of
from openbao import serving

pytestmark = pytest.mark.anyio

HOSTILE = {"python": "hostile_py_attacks", "javascript": "hostile_js_attacks"}
LANGUAGES = list(HOSTILE)


# --- the Python example ----------------------------------------------------


async def test_python_tool_schemas_come_from_type_hints(deployment):
    deployment.add_tool("summarise", "py_summarise")
    async with deployment.client() as client:
        listed = {t.name: t for t in (await client.list_tools()).tools}
    assert sorted(listed) == ["fetch_summary", "summarise_csv", "summarise_json", "whoami"]
    schema = listed["summarise_csv"].input_schema
    assert schema["required"] == ["csv"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["csv"]["type"] == "string"
    assert "first row names the columns" in schema["properties"]["csv"]["description"]
    assert schema["properties"]["delimiter"]["default"] == ","
    assert listed["summarise_csv"].output_schema["required"] == ["rows", "columns"]
    assert listed["summarise_csv"].annotations.read_only_hint is True
    assert listed["fetch_summary"].annotations.open_world_hint is True
    # Optional[str] with a None default: not required, no default written.
    assert listed["whoami"].input_schema.get("required") is None


async def test_python_tool_computes_and_names_bad_fields(deployment):
    deployment.add_tool("summarise", "py_summarise")
    async with deployment.client() as client:
        summary = await client.call_tool("summarise_csv", {"csv": "city,temp\nOslo,4\nRome,18\nLima,\n"})
        bad_json = await client.call_tool("summarise_json", {"records": "[1, 2]"})
        bad_delimiter = await client.call_tool("summarise_csv", {"csv": "a", "delimiter": ";;"})
        typed_wrong = await client.call_tool("summarise_csv", {"csv": 7})
        after = await client.call_tool("summarise_json", {"records": '[{"a": 1}, {"a": 3, "b": "x"}]'})
    assert not summary.is_error, text_of(summary)
    table = summary.structured_content
    assert table["rows"] == 3
    city, temp = table["columns"]
    assert city == {"name": "city", "count": 3, "distinct": 3}
    assert temp["count"] == 2 and temp["min"] == 4 and temp["max"] == 18 and temp["mean"] == 11
    assert bad_json.is_error and "field `records`" in text_of(bad_json)
    assert bad_delimiter.is_error and "field `delimiter`" in text_of(bad_delimiter)
    # The host validates arguments against the schema before the tool runs.
    assert typed_wrong.is_error and "csv" in text_of(typed_wrong)
    assert not after.is_error and after.structured_content["rows"] == 2


async def test_python_tool_fetches_only_what_its_manifest_allows(deployment, http_server):
    deployment.add_tool(
        "summarise", "py_summarise", egress={"allow": [{"url": http_server.url, "private": True}]}
    )
    async with deployment.client() as client:
        fetched = await client.call_tool("fetch_summary", {"url": http_server.url + "/hello"})
        denied = await client.call_tool("fetch_summary", {"url": "http://127.0.0.1:9/data.csv"})
        after = await client.call_tool("whoami", {"greeting": "hi"})
    assert not fetched.is_error, text_of(fetched)
    assert fetched.structured_content["columns"][0]["name"] == "hello from upstream"
    assert [s["path"] for s in http_server.seen] == ["/hello"]
    assert denied.is_error
    assert "egress denied: http://127.0.0.1:9 is not on the allowlist" in text_of(denied)
    assert not after.is_error and text_of(after).startswith("hi ")


async def test_python_tool_sees_the_caller_the_host_authenticated(deployment):
    deployment.add_tool("summarise", "py_summarise")
    deployment.stdio = {"client": "analyst-desk", "user": "ada", "groups": ["analysts", "oncall"]}
    async with deployment.client() as client:
        who = await client.call_tool("whoami", {})
    assert text_of(who) == "hello analyst-desk (user ada, groups analysts, oncall)"


# --- the JavaScript example ------------------------------------------------


async def test_javascript_tool_lists_computes_and_names_bad_fields(deployment):
    deployment.add_tool("links", "js_links")
    async with deployment.client() as client:
        listed = {t.name: t for t in (await client.list_tools()).tools}
        links = await client.call_tool(
            "extract_links",
            {"html": '<p><a href="/a">First <b>one</b></a> <a href=\'b.html\'>Second</a></p>', "base": "https://example.org/docs/"},
        )
        bad = await client.call_tool("extract_links", {"html": "", "base": "::not a url"})
        after = await client.call_tool("whoami", {})
    assert sorted(listed) == ["extract_links", "fetch_title", "whoami"]
    assert listed["extract_links"].input_schema["required"] == ["html"]
    assert listed["extract_links"].annotations.idempotent_hint is True
    assert not links.is_error, text_of(links)
    assert links.structured_content == {
        "count": 2,
        "links": [
            {"url": "https://example.org/a", "text": "First one"},
            {"url": "https://example.org/docs/b.html", "text": "Second"},
        ],
    }
    assert bad.is_error and "field `base`" in text_of(bad)
    assert not after.is_error and text_of(after).startswith("hello ")


async def test_javascript_tool_fetches_only_what_its_manifest_allows(deployment, http_server):
    deployment.add_tool("links", "js_links", egress={"allow": [{"url": http_server.url, "private": True}]})
    async with deployment.client() as client:
        fetched = await client.call_tool("fetch_title", {"url": http_server.url + "/hello"})
        denied = await client.call_tool("fetch_title", {"url": "http://127.0.0.1:9/"})
        after = await client.call_tool("whoami", {})
    assert not fetched.is_error, text_of(fetched)
    assert json.loads(text_of(fetched)) == {"title": None, "links": 0}
    assert [s["path"] for s in http_server.seen] == ["/hello"]
    assert denied.is_error
    assert "egress denied: http://127.0.0.1:9 is not on the allowlist" in text_of(denied)
    assert not after.is_error


# --- the hostile corpus in both languages --------------------------------


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        ({"timeout": "1s", "fuel": 1_000_000_000_000}, "limit exceeded: timeout (1000 ms)"),
        ({"timeout": "60s", "fuel": 200_000_000}, "limit exceeded: fuel (200000000 units)"),
    ],
    ids=["timeout", "fuel"],
)
async def test_a_spinning_tool_ends_at_its_limit(deployment, language, limits, expected):
    deployment.add_tool("attacks", HOSTILE[language], limits=limits)
    async with deployment.client() as client:
        spun = await client.call_tool("spin", {})
        after = await client.call_tool("ok", {})
    assert spun.is_error and text_of(spun) == expected
    assert not after.is_error and text_of(after) == "ok"


@pytest.mark.parametrize("language", LANGUAGES)
async def test_a_memory_bomb_ends_at_the_memory_limit(deployment, language):
    deployment.add_tool("attacks", HOSTILE[language], limits={"memory": "48MiB"})
    async with deployment.client() as client:
        bomb = await client.call_tool("bomb", {})
        after = await client.call_tool("ok", {})
    # The refusal comes first; a tool that caught its allocation failure may
    # add its own line (Python's MemoryError) after it.
    assert bomb.is_error
    assert text_of(bomb).splitlines()[0] == f"limit exceeded: memory ({48 << 20} bytes)"
    assert not after.is_error and text_of(after) == "ok"


@pytest.mark.parametrize("language", LANGUAGES)
async def test_every_call_gets_a_fresh_instance(deployment, language):
    deployment.add_tool("attacks", HOSTILE[language])
    async with deployment.client() as client:
        counts = [text_of(await client.call_tool("count", {})) for _ in range(3)]
    assert counts == ["1", "1", "1"]


@pytest.mark.parametrize("language", LANGUAGES)
async def test_a_denied_url_is_refused_by_name(deployment, http_server, language):
    deployment.add_tool(
        "attacks", HOSTILE[language], egress={"allow": [{"url": http_server.url, "private": True}]}
    )
    async with deployment.client() as client:
        allowed = await client.call_tool("fetch", {"url": http_server.url + "/hello"})
        denied = [
            await client.call_tool("fetch", {"url": url})
            for url in ("http://127.0.0.1:9/", "http://localhost:9/", "http://127.0.0.2/")
        ]
        after = await client.call_tool("ok", {})
    assert not allowed.is_error and text_of(allowed) == "200 hello from upstream"
    for result, origin in zip(denied, ("http://127.0.0.1:9", "http://localhost:9", "http://127.0.0.2:80")):
        assert result.is_error
        assert f"egress denied: {origin} is not on the allowlist" in text_of(result)
    assert [s["path"] for s in http_server.seen] == ["/hello"]
    assert not after.is_error


class Planted:
    """A read-only grant with one file, and a canary beside it outside."""

    def __init__(self, root: Path):
        self.canary = "STOCKADE-CANARY-" + secrets.token_hex(8)
        self.data = root / "data"
        self.data.mkdir()
        (self.data / "inside.txt").write_text("inside the grant")
        (root / "secret").write_text(self.canary)
        (self.data / "link-out").symlink_to(root / "secret")

    def grants(self) -> dict:
        return {"/data": {"host": str(self.data), "mode": "ro"}}


OUTSIDE = ["/etc/passwd", "/proc/self/environ", "/data/../secret", "../secret", "link-out", "/data/link-out"]


async def test_python_reads_nothing_outside_its_grants(deployment, tmp_path):
    planted = Planted(tmp_path)
    deployment.add_tool("attacks", HOSTILE["python"], fs=planted.grants())
    async with deployment.client() as client:
        read = await client.call_tool("read_paths", {"paths": ["/data/inside.txt", *OUTSIDE]})
        wrote = await client.call_tool("write_paths", {"paths": ["/data/new.txt", "/tmp/new.txt", "/new.txt"]})
        ambient = await client.call_tool("ambient", {})
    assert planted.canary not in text_of(read)
    tried = json.loads(text_of(read))
    assert tried[0] == {"path": "/data/inside.txt", "ok": True, "data": "inside the grant"}
    for attempt in tried[1:]:
        assert not attempt["ok"], attempt
    assert not any(a["ok"] for a in json.loads(text_of(wrote)))
    assert sorted(p.name for p in planted.data.iterdir()) == ["inside.txt", "link-out"]
    seen = json.loads(text_of(ambient))
    assert seen["environ"] == {}
    # No environment, no arguments, no root directory: only the grant.
    assert seen == {"environ": {}, "argv": [], "root": "FileNotFoundError", "cwd": "/"}


async def test_javascript_reads_nothing_outside_its_grants(deployment, tmp_path):
    planted = Planted(tmp_path)
    deployment.add_tool("attacks", HOSTILE["javascript"], fs=planted.grants())
    async with deployment.client() as client:
        read = await client.call_tool("read_paths", {"paths": ["inside.txt", *OUTSIDE]})
        after = await client.call_tool("ok", {})
    assert planted.canary not in text_of(read)
    report = json.loads(text_of(read))
    assert report["grants"] == ["/data"]
    inside, *outside = report["tried"]
    assert inside["ok"] and inside["data"] == "inside the grant"
    for attempt in outside:
        assert not attempt["ok"], attempt
    assert not after.is_error


TOKEN = "tok-" + "Py7h0nJs/Cr3d+3nt1al.q9"


@pytest.fixture(scope="module")
def openbao(tmp_path_factory):
    yield from serving(tmp_path_factory, {"tools/api": {"token": TOKEN}})


@pytest.mark.parametrize("language", LANGUAGES)
async def test_an_injected_credential_reaches_the_upstream_not_the_tool(deployment, openbao, http_server, language):
    deployment.add_tool(
        "attacks",
        HOSTILE[language],
        egress={"allow": [{"url": http_server.url, "private": True}]},
        **{
            "secrets.api_token": {
                "vault": "secret/data/tools/api#token",
                "destinations": [http_server.url],
                "header": "Authorization",
                "format": "Bearer {}",
            }
        },
    )
    deployment.vault = {
        "address": openbao.url,
        "auth": "approle",
        "role_id_file": str(openbao.role_id_file),
        "secret_id_file": str(openbao.secret_id_file),
        "timeout": "2s",
    }
    async with deployment.client() as client:
        echoed = await client.call_tool("fetch", {"url": http_server.url + "/echo-headers"})
        after = await client.call_tool("ok", {})
    received = {k.lower(): v for k, v in http_server.seen[0]["headers"].items()}
    assert received["authorization"] == f"Bearer {TOKEN}"
    assert TOKEN not in text_of(echoed)
    assert TOKEN[4:12] not in text_of(echoed)
    assert not after.is_error
