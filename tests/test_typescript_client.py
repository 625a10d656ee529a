"""The TypeScript MCP SDK (npm `@modelcontextprotocol/sdk`, pinned in
tests/node/package.json) lists and calls the example tools over stdio and
over Streamable HTTP with a bearer token.
SDK 1.32 speaks the legacy era only (its latest protocol is 2025-11-25);
the Python client covers both eras."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from conftest import BINARY, ROOT

NODE_DIR = ROOT / "tests" / "node"


@pytest.fixture(scope="module")
def node():
    node = shutil.which("node")
    if node is None or not (NODE_DIR / "node_modules" / "@modelcontextprotocol" / "sdk").is_dir():
        pytest.fail("node and tests/node/node_modules are installed by `cargo xtask test`")
    return node


def run_client(node, config, calls, *, url: str | None = None, token: str | None = None) -> dict:
    target = [url, "-"] if url else [str(BINARY), str(config)]
    done = subprocess.run(
        [node, str(NODE_DIR / "client.mjs"), *target, json.dumps(calls)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": os.environ.get("PATH", ""), "STOCKADE_TOKEN": token or ""},
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_typescript_sdk_lists_and_calls_the_examples(node, examples_deployment):
    calls = [
        ["transform", {"text": "Hello", "op": "upper"}],
        ["stats", {"text": "one two"}],
        ["transform", {"text": 5, "op": "upper"}],
        ["no_such_tool", {}],
    ]
    report = run_client(node, examples_deployment.write(), calls)
    assert report["server"]["name"] == "stockade"
    names = {t["name"] for t in report["tools"]}
    assert {"transform", "stats", "read_file", "write_file", "fetch"} <= names, names
    # The SDK validates structured content against the output schemas it
    # was given; every schema it saw is portable (no uint formats).
    assert "uint" not in json.dumps(report["tools"])
    upper, stats, bad, unknown = report["calls"]
    assert upper["result"]["content"][0]["text"] == "HELLO"
    assert not upper["result"].get("isError")
    assert "io.stockade/correlation" in upper["result"]["_meta"]
    assert not stats["result"].get("isError"), stats
    assert bad["result"]["isError"] and "invalid arguments: /text" in bad["result"]["content"][0]["text"]
    assert unknown["error"]["code"] == -32602 and "unknown tool" in unknown["error"]["message"]


def test_the_typescript_sdk_works_over_http_with_a_bearer_token(node, examples_deployment):
    from httpserve import HttpStockade, api_key

    key, entry = api_key("ts-client", groups=["analysts"])
    examples_deployment.auth = {"api_keys": [entry]}
    calls = [["transform", {"text": "over http", "op": "upper"}], ["list_dir", {"path": "/data"}]]
    with HttpStockade(examples_deployment) as server:
        report = run_client(node, None, calls, url=server.url, token=key)
        refused = subprocess.run(
            [node, str(NODE_DIR / "client.mjs"), server.url, "-", "[]"],
            capture_output=True, text=True, timeout=120,
            env={"PATH": os.environ.get("PATH", ""), "STOCKADE_TOKEN": "stk_wrong"},
        )
    upper, listing = report["calls"]
    assert upper["result"]["content"][0]["text"] == "OVER HTTP"
    assert not listing["result"].get("isError")
    assert {"transform", "list_dir"} <= {t["name"] for t in report["tools"]}
    # A wrong key gets no session at all.
    assert refused.returncode != 0 and "401" in refused.stderr
