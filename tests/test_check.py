"""`stockade check` validates config, manifests and components without serving."""

from conftest import sha256, wasm


def test_accepts_the_examples(examples_deployment):
    result = examples_deployment.check()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "8 tools, no problems" in result.stdout


def test_refuses_a_wrong_digest_naming_both(deployment):
    wrong = "ab" * 32
    deployment.add_tool("text-kit", "text_kit", sha=wrong)
    result = deployment.check()
    assert result.returncode != 0
    assert wrong in result.stdout
    assert sha256(wasm("text_kit")) in result.stdout
    assert "text-kit.toml" in result.stdout


def test_refuses_an_unknown_key_naming_file_and_key(deployment):
    deployment.add_tool("text-kit", "text_kit", limits={"fuel": 1_000_000, "cpu_seconds": 3})
    result = deployment.check()
    assert result.returncode != 0
    assert "text-kit.toml" in result.stdout
    assert "cpu_seconds" in result.stdout


def test_refuses_a_bad_limit_naming_the_key_and_expectation(deployment):
    deployment.add_tool("text-kit", "text_kit", limits={"memory": "lots"})
    result = deployment.check()
    assert result.returncode != 0
    assert "limits.memory" in result.stdout
    assert "MiB" in result.stdout


def test_refuses_an_expose_of_a_tool_the_component_lacks(deployment):
    deployment.add_tool("text-kit", "text_kit", tool={"expose": ["transform", "teleport"]})
    result = deployment.check()
    assert result.returncode != 0
    assert "teleport" in result.stdout


def test_serves_only_the_exposed_subset(deployment):
    deployment.add_tool("text-kit", "text_kit", tool={"expose": ["stats"]})
    result = deployment.check()
    assert result.returncode == 0, result.stdout
    assert "stats" in result.stdout and "transform" not in result.stdout


def test_a_broken_config_file_is_an_error_naming_it(tmp_path):
    import subprocess

    from conftest import BINARY

    config = tmp_path / "stockade.toml"
    config.write_text("tools = [\n")
    result = subprocess.run([str(BINARY), "check", "--config", str(config)], capture_output=True, text=True)
    assert result.returncode != 0
    assert "stockade.toml" in result.stderr
    assert "panicked" not in result.stderr


def test_a_prefix_keeps_two_copies_of_a_component_apart(deployment):
    deployment.add_tool("kit-a", "text_kit", tool={"prefix": "a_"})
    deployment.add_tool("kit-b", "text_kit", tool={"prefix": "b_"})
    result = deployment.check()
    assert result.returncode == 0, result.stdout
    assert "a_transform" in result.stdout and "b_transform" in result.stdout


def test_two_components_offering_the_same_name_clash(deployment):
    deployment.add_tool("kit-a", "text_kit")
    deployment.add_tool("kit-b", "text_kit")
    result = deployment.check()
    assert result.returncode != 0
    assert "already served" in result.stdout


def test_names_missing_vault_files(deployment, tmp_path):
    deployment.add_tool("text-kit", "text_kit")
    deployment.vault = {
        "address": "http://127.0.0.1:8200",
        "auth": "approle",
        "role_id_file": str(tmp_path / "no-role-id"),
        "secret_id_file": str(tmp_path / "no-secret-id"),
    }
    result = deployment.check()
    assert result.returncode != 0
    assert "vault.role_id_file" in result.stderr + result.stdout
    assert "no-role-id" in result.stderr + result.stdout
    (tmp_path / "no-role-id").write_text("r")
    (tmp_path / "no-secret-id").write_text("s")
    deployment.vault["ca_bundle"] = str(tmp_path / "no-ca.pem")
    result = deployment.check()
    assert result.returncode != 0
    assert "vault.ca_bundle" in result.stderr + result.stdout


def test_warns_about_allow_entries_that_can_never_match(deployment):
    deployment.add_tool(
        "fetch",
        "fetch",
        egress={"allow": ["http://127.0.0.1:9000", "http://localhost:9001", {"url": "http://10.0.0.8", "private": True}, "https://example.com"]},
    )
    result = deployment.check()
    assert result.returncode == 0, result.stdout
    warnings = [line for line in result.stdout.splitlines() if line.startswith("WARN")]
    assert len(warnings) == 2, warnings
    assert any("127.0.0.1" in w and "private = true" in w for w in warnings)
    assert any("localhost" in w for w in warnings)


def test_serve_strict_refuses_to_start_when_a_tool_is_refused(deployment):
    import subprocess

    from conftest import BINARY

    deployment.add_tool("text-kit", "text_kit")
    deployment.add_tool("broken", "text_kit", sha="ab" * 32)
    strict = subprocess.run(
        [str(BINARY), "serve", "--strict", "--config", str(deployment.write())],
        input="",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert strict.returncode == 1
    assert "--strict: 1 tool(s) refused" in strict.stderr
    lenient = subprocess.run(
        [str(BINARY), "serve", "--config", str(deployment.write())],
        input="",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert lenient.returncode == 0, lenient.stderr


def test_json_logs_and_no_payloads_at_debug(deployment):
    import json
    import subprocess

    from conftest import BINARY, INITIALIZE, INITIALIZED, tool_call

    deployment.add_tool("text-kit", "text_kit")
    lines = [INITIALIZE, INITIALIZED, tool_call(2, "transform", {"text": "password=hunter2", "op": "upper"})]
    proc = subprocess.run(
        [str(BINARY), "--log-format", "json", "serve", "--config", str(deployment.write())],
        input="".join(json.dumps(l) + "\n" for l in lines),
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "STOCKADE_LOG": "trace"},
    )
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stderr.splitlines() if line.strip()]
    assert records and all("level" in r for r in records)
    # Log lines carry no payloads; the audit record keeps the arguments
    # (masked by the schema, by secrets and by size), on purpose.
    logs = [r for r in records if r.get("level") != "AUDIT"]
    assert logs and "hunter2" not in json.dumps(logs)
    audit = [r["record"] for r in records if r.get("level") == "AUDIT"]
    (started,) = [r for r in audit if r["event"] == "call_started"]
    assert started["arguments"]["text"] == "password=hunter2"


def test_a_too_small_address_space_limit_is_named_at_start(deployment):
    import subprocess

    from conftest import BINARY

    deployment.add_tool("text-kit", "text_kit", limits={"memory": "64MiB"})
    config = deployment.write()
    command = f"ulimit -v 8000000 && exec {BINARY} check --config {config}"
    small = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60)
    assert small.returncode == 1
    assert "ulimit -v" in small.stderr and "max_concurrent_calls = 64" in small.stderr, small.stderr
    assert "panicked" not in small.stderr
    # The reservation follows the configuration: fewer slots and smaller
    # memories fit under the same limit.
    deployment.server["max_concurrent_calls"] = 8
    deployment.add_tool("text-kit", "text_kit", limits={"memory": "16MiB"})
    deployment.manifests = deployment.manifests[:1]
    config = deployment.write()
    command = f"ulimit -v 8000000 && exec {BINARY} check --config {config}"
    fits = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60)
    assert fits.returncode == 0, fits.stderr + fits.stdout
