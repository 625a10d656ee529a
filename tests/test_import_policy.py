"""`stockade import-policy`: a Wassette policy.yaml becomes a manifest whose
grants the runtime then enforces (storage as fs grants, network as egress,
memory as a limit), environment variables are named and never passed, and
what has no Stockade form is refused by name.
"""

from __future__ import annotations

import subprocess
import tomllib

import pytest

from conftest import BINARY, sha256, text_of, wasm

pytestmark = pytest.mark.anyio


def import_policy(tmp_path, policy: str, component: str = "js_plain_exports", *extra: str):
    path = tmp_path / "policy.yaml"
    path.write_text(policy)
    return subprocess.run(
        [str(BINARY), "import-policy", str(path), "--component", str(wasm(component)), *extra],
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_an_imported_policy_is_served_with_its_grants(deployment, tmp_path, http_server):
    data = tmp_path / "data"
    data.mkdir()
    imported = import_policy(
        tmp_path,
        f"""version: "1.0"
description: "A component's grants, as Wassette takes them"
permissions:
  storage:
    allow:
      - uri: "fs://{data}"
        access: ["read"]
  network:
    allow:
      - host: "{http_server.url}"
      - host: "api.example.com"
  environment:
    allow:
      - key: "WEATHER_API_KEY"
  resources:
    limits:
      memory: "96Mi"
""",
        "js_plain_exports",
        "--name",
        "weather",
    )
    assert imported.returncode == 0, imported.stderr
    assert "`WEATHER_API_KEY` is not passed" in imported.stderr
    manifest = tomllib.loads(imported.stdout)
    assert manifest["tool"] == {
        "name": "weather",
        "component": str(wasm("js_plain_exports").resolve()),
        "sha256": sha256(wasm("js_plain_exports")),
    }
    assert manifest["limits"] == {"memory": "96MiB"}
    assert manifest["fs"] == {str(data): {"host": str(data), "mode": "ro"}}
    assert manifest["egress"]["allow"] == [{"url": http_server.url, "private": True}, "https://api.example.com"]
    assert "WEATHER_API_KEY" in imported.stdout  # named in a comment, for the operator

    (deployment.dir / "weather.toml").write_text(
        imported.stdout.replace('memory = "96MiB"', 'memory = "96MiB"\nfuel = 2_000_000_000')
    )
    deployment.manifests.append("weather.toml")
    async with deployment.client() as client:
        fetched = await client.call_tool("fetch-text", {"url": http_server.url + "/hello"})
        denied = await client.call_tool("fetch-text", {"url": "http://127.0.0.1:9/"})
    assert fetched.structured_content == {"result": {"ok": "hello from upstream"}}
    assert denied.is_error and "egress denied: http://127.0.0.1:9 is not on the allowlist" in text_of(denied)


@pytest.mark.parametrize(
    ("policy", "named"),
    [
        ('version: "1.0"\npermissions:\n  network:\n    allow:\n      - hots: "x"\n', "unknown field `hots`"),
        ('version: "2.0"\n', 'version "2.0"'),
        (
            'version: "1.0"\npermissions:\n  network:\n    allow: []\n    deny:\n      - host: "x"\n',
            "permissions.network.deny has no Stockade form",
        ),
        (
            'version: "1.0"\npermissions:\n  storage:\n    allow:\n      - uri: "/etc"\n        access: ["read"]\n',
            "permissions.storage.allow[0].uri \"/etc\" is not an fs:// URI",
        ),
        (
            'version: "1.0"\npermissions:\n  storage:\n    allow:\n      - uri: "fs:///etc"\n        access: ["exec"]\n',
            'permissions.storage.allow[0].access: "exec" is not read or write',
        ),
        ('version: "1.0"\npermissions:\n  resources:\n    limits:\n      memory: "lots"\n', "memory \"lots\""),
        ("version: [\n", "policy.yaml"),
    ],
    ids=["unknown-field", "version", "deny", "uri", "access", "memory", "not-yaml"],
)
def test_what_has_no_stockade_form_is_refused_by_name(tmp_path, policy, named):
    imported = import_policy(tmp_path, policy)
    assert imported.returncode == 1
    assert named in imported.stderr
    assert imported.stdout == ""
    assert "panicked" not in imported.stderr
