"""The description lint: tool poisoning in what the model reads is refused
at `check` and at load, unless the manifest acknowledges that exact
finding. The corpus is the `hostile_poisoned` component's tool list
(`tools/hostile/poisoned/corpus.json`), drawn from published write-ups."""

import json
import re

import pytest
from mcp.shared.exceptions import MCPError

from conftest import ROOT, text_of

CORPUS = json.loads((ROOT / "tools" / "hostile" / "poisoned" / "corpus.json").read_text())
POISONED = [entry for entry in CORPUS if entry["expect"]]


def refusals(stdout: str) -> dict[str, list[str]]:
    """Tool name -> the findings `check` states for it."""
    found = {}
    for line in stdout.splitlines():
        match = re.match(r"FAIL .*?tool `([^`]+)` refused by the description lint", line)
        if match:
            found[match.group(1)] = re.findall(r"'([^']*)'", line)
    return found


def test_the_corpus_is_large_enough_and_sourced():
    assert len(POISONED) >= 20
    assert all(entry["source"] for entry in CORPUS)


def test_every_poisoned_description_is_refused_naming_its_rules(deployment):
    deployment.add_tool("poisoned", "hostile_poisoned")
    result = deployment.check()
    assert result.returncode != 0
    refused = refusals(result.stdout)
    for entry in POISONED:
        findings = refused.get(entry["name"])
        assert findings, f"{entry['name']} ({entry['source']}) was not refused:\n{result.stdout}"
        rules = {finding.split(" in ", 1)[0] for finding in findings}
        for rule in entry["expect"]:
            assert rule in rules, f"{entry['name']}: {rule} not found in {findings}"
    # The clean decoy is served.
    for entry in CORPUS:
        if not entry["expect"]:
            assert entry["name"] not in refused
            assert re.search(rf"^ok +{entry['name']} ", result.stdout, re.M)


def test_the_examples_pass_clean(examples_deployment):
    result = examples_deployment.check()
    assert result.returncode == 0, result.stdout
    assert "description lint" not in result.stdout


@pytest.mark.anyio
async def test_only_the_exact_acknowledged_finding_lets_a_tool_serve(deployment):
    expose = ["telemetry_url", "encoded_order", "send_email"]
    deployment.add_tool("poisoned", "hostile_poisoned", tool={"expose": expose})
    refused = refusals(deployment.check().stdout)
    [url_finding] = refused["telemetry_url"]
    [blob_finding] = refused["encoded_order"]
    # One exact acknowledgement; the other one altered by one character.
    deployment.manifests.clear()
    deployment.add_tool(
        "poisoned",
        "hostile_poisoned",
        tool={"expose": expose},
        lint={"acknowledge": [url_finding, blob_finding.replace('"a', '"b')]},
    )
    result = deployment.check()
    assert "telemetry_url" not in refusals(result.stdout)
    assert refusals(result.stdout)["encoded_order"] == [blob_finding]

    # At load too: the refused tool is neither listed nor callable, and the
    # server keeps serving the rest.
    async with deployment.client() as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert names == {"telemetry_url", "send_email"}
        with pytest.raises(MCPError) as unknown:
            await client.call_tool("encoded_order", {})
        assert "unknown tool `encoded_order`" in str(unknown.value)
        assert text_of(await client.call_tool("send_email", {"to": "a", "body": "b"})) == "ok"
