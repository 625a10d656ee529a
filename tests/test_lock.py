"""The signed tool lock: `stockade lock` records every served tool; `serve`
and `check` verify the signature and keep every tool that drifted from the
lock (description, schema, hints, component digest, grants; new or
vanished) out of service, audited and alerted, naming what changed."""

import base64
import json
import subprocess

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from conftest import BINARY, text_of


def keygen(directory):
    key = directory / "lock-key"
    subprocess.run([str(BINARY), "keygen", "--out", str(key)], check=True, capture_output=True)
    return key


def lock(deployment, key):
    return subprocess.run(
        [str(BINARY), "lock", "--config", str(deployment.write()), "--sign", str(key)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def locked(deployment, key):
    """Locks the deployment as it stands and makes the lock mandatory."""
    result = lock(deployment, key)
    assert result.returncode == 0, result.stdout + result.stderr
    deployment.lock = {
        "file": str(deployment.dir / "stockade.lock"),
        "public_key_file": f"{key}.pub",
        "required": True,
    }
    return deployment.dir / "stockade.lock"


def resign(path, key):
    """Signs `path` as `stockade lock` would: what an operator holding the
    key does when approving a lock."""
    der = base64.b64decode("".join(key.read_text().split("-----")[2].split()))
    # PKCS#8 v2 as ring writes it: the 32-byte seed follows a 16-byte header.
    private = Ed25519PrivateKey.from_private_bytes(der[16:48])
    signature = private.sign(b"stockade tool lock v1\n" + path.read_bytes())
    key_id = path.with_name(path.name + ".sig").read_text().split()[1]
    path.with_name(path.name + ".sig").write_text(
        f"ed25519 {key_id} {base64.b64encode(signature).decode()}\n"
    )


def test_a_fresh_lock_serves_everything(examples_deployment, tmp_path):
    key = keygen(tmp_path)
    path = locked(examples_deployment, key)
    entries = json.loads(path.read_text())["tools"]
    assert set(entries) == {
        "transform", "stats", "json_pick", "list_dir", "read_file", "search_files", "write_file", "fetch",
    }
    assert entries["fetch"]["grants"] == {"egress": {"allow": []}}
    assert len(entries["stats"]["component_sha256"]) == 64
    result = examples_deployment.check()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "8 tools, no problems" in result.stdout


@pytest.mark.anyio
async def test_each_kind_of_drift_is_refused_naming_it(examples_deployment, tmp_path):
    key = keygen(tmp_path)
    # The CPU component's `ok` tool stands in for a component update.
    examples_deployment.add_tool("cpu", "hostile_resource_cpu", tool={"expose": ["ok"]})
    path = locked(examples_deployment, key)

    # What ops approved differs from what is served: a description and a
    # schema (in a lock re-signed by the key holder), a hint.
    lock_text = json.loads(path.read_text())
    lock_text["tools"]["transform"]["description"] = "Transform text."
    lock_text["tools"]["json_pick"]["input_schema"]["properties"]["pointer"]["type"] = "integer"
    lock_text["tools"]["stats"]["hints"]["destructive"] = True
    path.write_text(json.dumps(lock_text, indent=1) + "\n")
    resign(path, key)
    # ...and the deployment changed under it: a new component for `ok`,
    # wider grants for fetch, a new tool.
    def replace(name, component, **tables):
        examples_deployment.manifests.remove(f"{name}.toml")
        examples_deployment.add_tool(name, component, **tables)

    replace("fetch", "fetch", egress={"allow": ["https://example.com"]})
    replace("text-kit", "text_kit", output={"clean": False})
    replace("cpu", "hostile_resource_memory", tool={"expose": ["ok"]})
    examples_deployment.add_tool("poisoned", "hostile_poisoned", tool={"expose": ["send_email"]})
    result = examples_deployment.check()
    assert result.returncode != 0
    drift = {
        line.split("`")[1]: line
        for line in result.stdout.splitlines()
        if "differs from the signed lock" in line
    }
    assert "description changed" in drift["transform"]
    assert "input schema changed" in drift["json_pick"]
    assert "hints changed (destructive)" in drift["stats"]
    assert "component digest changed" in drift["ok"]
    assert "grants changed (egress)" in drift["fetch"]
    assert "grants changed (output)" in drift["transform"]
    assert "a new tool the lock does not name" in drift["send_email"]
    assert "read_file" not in drift

    # Served: the drifted tools are out, the rest work, the drift is in
    # the audit as critical records and alerts.
    audit = tmp_path / "audit"
    examples_deployment.audit = {"dir": str(audit)}
    async with examples_deployment.client() as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert names == {"list_dir", "read_file", "search_files", "write_file"}
        listing = await client.call_tool("list_dir", {"path": "/data"})
        assert not listing.is_error, text_of(listing)
    records = [
        json.loads(line)
        for file in sorted(audit.glob("audit-*.jsonl"))
        for line in file.read_text().splitlines()
    ]
    drifted = {r["tool"] for r in records if r["event"] == "lock_drift"}
    assert drifted == {"transform", "json_pick", "stats", "ok", "fetch", "send_email"}
    assert all(r["severity"] == "critical" for r in records if r["event"] == "lock_drift")
    alerts = {r["tool"] for r in records if r["event"] == "alert" and r["data"]["kind"] == "lock_drift"}
    assert alerts == drifted


def test_a_vanished_tool_is_reported(examples_deployment, tmp_path):
    key = keygen(tmp_path)
    locked(examples_deployment, key)
    examples_deployment.manifests.remove("fetch.toml")
    result = examples_deployment.check()
    assert result.returncode != 0
    assert "tool `fetch` differs from the signed lock: in the lock but not served" in result.stdout


def test_a_tampered_or_foreign_lock_stops_the_server(examples_deployment, tmp_path):
    key = keygen(tmp_path)
    path = locked(examples_deployment, key)
    original = path.read_text()
    path.write_text(original.replace("Transform text", "Transform  text"))
    result = examples_deployment.check()
    assert result.returncode != 0
    assert "signature does not verify" in result.stderr and "stockade.lock" in result.stderr

    # Signed by another key.
    path.write_text(original)
    other = tmp_path / "other"
    other.mkdir()
    resign(path, keygen(other))
    result = examples_deployment.check()
    assert result.returncode != 0 and "signature does not verify" in result.stderr

    # Missing, with the lock required.
    path.unlink()
    result = examples_deployment.check()
    assert result.returncode != 0 and "stockade.lock" in result.stderr


def test_required_without_a_lock_file_is_a_config_error(examples_deployment):
    examples_deployment.lock = {"required": True}
    result = examples_deployment.check()
    assert result.returncode != 0
    assert "lock.file" in result.stderr and "lock.required" in result.stderr


def test_lock_refuses_a_configuration_with_problems(deployment, tmp_path):
    key = keygen(tmp_path)
    deployment.add_tool("poisoned", "hostile_poisoned", tool={"expose": ["telemetry_url"]})
    result = lock(deployment, key)
    assert result.returncode != 0
    assert "description lint" in result.stdout
    assert not (deployment.dir / "stockade.lock").exists()
