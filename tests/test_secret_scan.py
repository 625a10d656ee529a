"""The repository's secret scan (detect-secrets): every tracked file is
scanned, and only the reviewed test fixtures listed in `.secrets.baseline`
may look like credentials. A real-looking credential added anywhere fails
the scan, which names the file and the kind of secret.

To add a fixture on purpose: `detect-secrets scan --baseline
.secrets.baseline`, review the new entries, and commit the baseline."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

HOOK = Path(sys.executable).parent / "detect-secrets-hook"

# detect-secrets' hook: 0 clean, 1 new secrets, 3 clean but the baseline's
# line numbers were brought up to date (in the copy the scan is given).
CLEAN = (0, 3)


def tracked_files() -> list[str]:
    """Every tracked file but the baseline (which holds the fixtures' hashes)."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
    return [name for name in listed.stdout.decode().split("\0") if name and name != ".secrets.baseline"]


def scan(files: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    # A copy, so that the hook's line-number updates never touch the repository.
    baseline = tmp_path / "baseline.json"
    shutil.copy(ROOT / ".secrets.baseline", baseline)
    return subprocess.run(
        [str(HOOK), "--baseline", str(baseline), *files],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )


def test_the_repository_holds_no_unreviewed_secret(tmp_path):
    files = tracked_files()
    assert "README.md" in files and len(files) > 100
    result = scan(files, tmp_path)
    assert result.returncode in CLEAN, result.stdout + result.stderr


def test_a_real_looking_credential_fails_the_scan(tmp_path):
    planted = tmp_path / "settings.py"
    # Assembled here so that the repository never holds one whole.
    planted.write_text(
        'AWS_ACCESS_KEY_ID = "' + "AKIA" + "QYLPMN5HZ3KX7TBW" + '"\n'
        'GITHUB_TOKEN = "' + "ghp_" + ("x7Kq2LmN9p" * 4)[:36] + '"\n'
    )
    result = scan([*tracked_files()[:20], str(planted)], tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert str(planted) in result.stdout
    assert "AWS Access Key" in result.stdout and "GitHub Token" in result.stdout


def test_a_reviewed_fixture_moved_to_another_file_fails_the_scan(tmp_path):
    # The baseline allows a fixture where it was reviewed, not wherever it
    # is copied.
    fixture = (ROOT / "runtime/src/secrets/literal.rs").read_text()
    token = re.search(r"ghp_[A-Za-z0-9]{36}", fixture).group(0)
    copied = tmp_path / "elsewhere.toml"
    copied.write_text(f'token = "{token}"\n')
    result = scan([str(copied)], tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "GitHub Token" in result.stdout
