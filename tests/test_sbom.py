"""SBOMs: `cargo xtask build` writes a CycloneDX SBOM of the runtime's
crates beside the binary, and one per tool component beside it and inside
it (custom section `stockade:sbom`); `stockade sbom` prints the served
set, runtime and components, with digests. Every document is checked
against the CycloneDX 1.5 schema."""

from __future__ import annotations

import hashlib
import json
import subprocess
import tomllib

import pytest

from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from conftest import BINARY, ROOT, sha256, wasm

VALIDATOR = JsonStrictValidator(SchemaVersion.V1_5)


def valid(text: str) -> dict:
    problem = VALIDATOR.validate_str(text)
    assert problem is None, str(problem)[:2000]
    return json.loads(text)


def locked_versions() -> dict[str, set[str]]:
    lock = tomllib.loads((ROOT / "Cargo.lock").read_text())
    versions: dict[str, set[str]] = {}
    for package in lock["package"]:
        versions.setdefault(package["name"], set()).add(package["version"])
    return versions


def crates(components: list[dict]) -> dict[str, str]:
    return {c["name"]: c["version"] for c in components}


def test_the_runtime_and_every_tool_carry_a_valid_sbom_of_their_crates():
    locked = locked_versions()
    runtime = valid((BINARY.parent / "stockade.cdx.json").read_text())
    assert runtime["metadata"]["component"]["name"] == "stockade"
    built = crates(runtime["components"])
    for name in ["wasmtime", "rustls", "landlock", "rmcp", "stockade-host-api"]:
        assert built[name] in locked[name], name
    assert "proptest" not in built  # a test dependency is not in the binary
    listed = {c["name"]: c for c in runtime["components"]}
    assert listed["wasmtime"]["purl"] == f"pkg:cargo/wasmtime@{built['wasmtime']}"
    assert listed["wasmtime"]["licenses"] == [{"expression": "Apache-2.0 WITH LLVM-exception"}]
    for stem in ["text_kit", "files", "fetch"]:
        beside = valid(wasm(stem).with_suffix(".cdx.json").read_text())
        assert "stockade-sdk" in crates(beside["components"])
        assert "wasmtime" not in crates(beside["components"])
        # The same document is inside the component.
        assert b"stockade:sbom" in wasm(stem).read_bytes()


def test_sbom_prints_the_served_set_with_digests():
    config = ROOT / "examples" / "stockade.toml"
    run = subprocess.run([str(BINARY), "sbom", "--config", str(config)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    served = valid(run.stdout)
    runtime, *components = served["components"]
    assert runtime["name"] == "stockade"
    assert runtime["hashes"] == [{"alg": "SHA-256", "content": hashlib.sha256(BINARY.read_bytes()).hexdigest()}]
    assert "wasmtime" in crates(runtime["components"])
    by_name = {c["name"]: c for c in components}
    assert set(by_name) == {"fetch", "files", "text-kit", "py-summarise", "js-links",
                            "plain-exports", "js-plain-exports"}
    for stem, name in [("fetch", "fetch"), ("files", "files"), ("text_kit", "text-kit"),
                       ("py_summarise", "py-summarise"), ("js_links", "js-links")]:
        component = by_name[name]
        assert component["hashes"] == [{"alg": "SHA-256", "content": sha256(wasm(stem))}]
        properties = {p["name"]: p["value"] for p in component["properties"]}
        assert properties["stockade:sbom"] == "embedded"
        beside = json.loads(wasm(stem).with_suffix(".cdx.json").read_text())
        assert crates(component["components"]) == crates(beside["components"])
    tools = {p["name"]: p["value"] for p in by_name["fetch"]["properties"]}["stockade:tools"]
    assert tools == "fetch, demo-api"  # one component, two manifests


@pytest.mark.parametrize(
    ("stem", "sdk", "compiler", "purl"),
    [
        ("py_summarise", "stockade-sdk-python", "componentize-py", "pkg:pypi/componentize-py@0.25.1"),
        ("js_links", "stockade-sdk-js", "@bytecodealliance/componentize-js",
         "pkg:npm/%40bytecodealliance/componentize-js@0.23.0"),
    ],
)
def test_python_and_javascript_tools_carry_their_sdk_and_compiler(stem, sdk, compiler, purl):
    beside = valid(wasm(stem).with_suffix(".cdx.json").read_text())
    listed = {c["name"]: c for c in beside["components"]}
    assert set(listed) == {sdk, compiler}
    assert listed[compiler]["purl"] == purl
    assert json.dumps(beside, separators=(",", ":")).encode() in wasm(stem).read_bytes()


def test_a_component_that_does_not_match_its_pin_is_named(deployment):
    deployment.add_tool("text-kit", "text_kit", sha="0" * 64)
    run = subprocess.run([str(BINARY), "sbom", "--config", str(deployment.write())],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    assert "does not match its pin" in run.stderr and str(wasm("text_kit")) in run.stderr
    assert valid(run.stdout)["components"][1]["hashes"][0]["content"] == sha256(wasm("text_kit"))
