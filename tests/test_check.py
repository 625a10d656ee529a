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
