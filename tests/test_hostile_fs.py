"""Hostile filesystem corpus: every way out of a grant fails, caps hold.

The `fs-attacks` tool (tools/hostile/fs-attacks) gets `/data` read-only and
`/scratch` read-write. Each test plants what its attack needs in tmp_path,
with a canary string in every file outside the grants, runs the attack,
and checks that the canary never reaches the client, that each attempt
failed with the expected error class, that the host files are untouched,
and that a benign call right after still succeeds.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import pytest
from mcp import Client

from conftest import text_of

pytestmark = pytest.mark.anyio

INSIDE = "inside data\n"

# Error classes the guest sees, as `std::io::ErrorKind` names (through
# wasi-libc) or `wasi:filesystem` error-code names (direct calls).
REFUSED = {"PermissionDenied", "NotFound", "access", "not-permitted", "no-entry"}
READ_ONLY = {"PermissionDenied", "ReadOnlyFilesystem", "not-permitted", "read-only"}


class Layout:
    """tmp_path with a read-only grant, a read-write grant and canaries outside."""

    def __init__(self, root: Path):
        self.root = root
        self.canary = "STOCKADE-CANARY-" + secrets.token_hex(8)
        self.data = root / "data"
        self.work = root / "work"
        self.outside = root / "outside"
        self.secret = root / "secret"
        for d in (self.data / "sub", self.work, self.outside):
            d.mkdir(parents=True)
        (self.data / "inside.txt").write_text(INSIDE)
        self.secret.write_text(self.canary + "\n")
        (self.outside / "secret").write_text(self.canary + "\n")

    def grants(self, **work_caps) -> dict:
        return {
            "/data": {"host": str(self.data), "mode": "ro"},
            "/scratch": {"host": str(self.work), "mode": "rw", **work_caps},
        }

    def untouched(self):
        """Everything outside the grants and in the ro grant is as planted."""
        assert self.secret.read_text() == self.canary + "\n"
        assert (self.outside / "secret").read_text() == self.canary + "\n"
        assert sorted(p.name for p in self.outside.iterdir()) == ["secret"]
        assert (self.data / "inside.txt").read_text() == INSIDE


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    return Layout(tmp_path)


def attempts(result) -> list[dict]:
    assert not result.is_error, text_of(result)
    return json.loads(text_of(result))


def assert_all_refused(result, layout: Layout, kinds=REFUSED) -> list[dict]:
    text = text_of(result)
    assert layout.canary not in text
    tried = attempts(result)
    assert tried, "the attack tried nothing"
    for a in tried:
        assert not a["ok"], f"attack succeeded: {a}"
        assert a["kind"] in kinds, f"unexpected error class: {a}"
    return tried


async def benign(client):
    ok = await client.call_tool("read_file", {"path": "/data/inside.txt"})
    assert not ok.is_error and text_of(ok) == INSIDE


def deploy(deployment, layout: Layout, **work_caps):
    deployment.add_tool("fs-attacks", "hostile_fs_attacks", fs=layout.grants(**work_caps))


async def test_dotdot_never_leaves_a_grant(deployment, layout):
    deploy(deployment, layout)
    async with deployment.client() as client:
        result = await client.call_tool("dotdot_escape", {})
        await benign(client)
    assert_all_refused(result, layout)
    layout.untouched()


async def test_absolute_paths_outside_the_grants_do_not_exist(deployment, layout):
    deploy(deployment, layout)
    host_paths = [str(layout.secret), str(layout.data), str(layout.data / "inside.txt"), str(layout.root)]
    async with deployment.client() as client:
        result = await client.call_tool("absolute_escape", {"paths": host_paths})
        await benign(client)
    tried = assert_all_refused(result, layout)
    # The host's layout is not revealed either: no directory listing of the
    # host path of a grant, no "inside data" through its host path.
    assert not any(INSIDE.strip() in a["got"] for a in tried)


async def test_planted_symlinks_that_point_outside_are_not_followed(deployment, layout):
    for grant in (layout.data, layout.work):
        (grant / "link").symlink_to(layout.secret)
        (grant / "dirlink").symlink_to(layout.outside, target_is_directory=True)
    deploy(deployment, layout)
    async with deployment.client() as client:
        result = await client.call_tool("symlink_escape", {})
        await benign(client)
    assert_all_refused(result, layout)
    layout.untouched()


async def test_planted_hard_links_to_outside_files_cannot_be_opened(deployment, layout):
    # Same filesystem as the grants, so the links are real hard links: the
    # path stays inside the grant, the inode is the outside file.
    os.link(layout.secret, layout.data / "hl")
    os.link(layout.secret, layout.work / "hl")
    deploy(deployment, layout)
    async with deployment.client() as client:
        result = await client.call_tool("hardlink_escape", {})
        await benign(client)
    tried = assert_all_refused(result, layout, kinds={"PermissionDenied", "access"})
    assert {a["op"] for a in tried} >= {"read", "stat", "append", "truncate", "pwrite"}
    layout.untouched()
    assert os.stat(layout.secret).st_nlink == 3


async def test_proc_and_dev_are_unreachable(deployment, layout):
    # A FIFO inside the grant is no way out either (and must not hang the call).
    os.mkfifo(layout.data / "fifo")
    deploy(deployment, layout)
    # The canary is in the server's environment and its command line holds
    # the tmp path: neither may show up.
    async with Client(deployment.params({"STOCKADE_TEST_CANARY": layout.canary}), mode="legacy") as client:
        result = await client.call_tool("proc_and_dev", {})
        await benign(client)
    tried = assert_all_refused(result, layout)
    assert not any(str(layout.root) in a["got"] or str(layout.root) in a["error"] for a in tried)


async def test_every_mutation_of_a_read_only_grant_fails(deployment, layout):
    deploy(deployment, layout)
    before = sorted(str(p.relative_to(layout.data)) for p in layout.data.rglob("*"))
    async with deployment.client() as client:
        result = await client.call_tool("ro_mutations", {})
        await benign(client)
    tried = assert_all_refused(result, layout, kinds=READ_ONLY)
    assert len(tried) == 14
    layout.untouched()
    assert sorted(str(p.relative_to(layout.data)) for p in layout.data.rglob("*")) == before
    assert list(layout.work.iterdir()) == []


async def test_a_file_cannot_be_renamed_or_linked_out_of_a_rw_grant(deployment, layout):
    deploy(deployment, layout)
    deployment.write()
    # The runtime's own state (`.stockade/`, its control directory) aside.
    before = sorted(p.name for p in layout.root.iterdir() if p.name != ".stockade")
    async with deployment.client() as client:
        result = await client.call_tool("move_out", {})
        await benign(client)
    text = text_of(result)
    assert layout.canary not in text
    tried = attempts(result)
    assert tried[0]["op"] == "create" and tried[0]["ok"]
    moves = [a for a in tried if a["op"] in ("rename", "link", "rename_at", "link_at")]
    assert len(moves) == 9
    for a in moves:
        assert not a["ok"], f"moved out: {a}"
        assert a["kind"] in REFUSED | READ_ONLY, a
    # Symlinks that would lead out are refused at creation, so reading
    # through them finds nothing and none is left on the host.
    links = [a for a in tried if a["op"] == "symlink_at"]
    assert len(links) == 2 and all(a["kind"] == "not-permitted" for a in links), links
    for a in tried:
        if a["op"] == "read":
            assert not a["ok"] and a["kind"] in REFUSED, a
    assert not any(p.is_symlink() for p in layout.work.rglob("*"))
    assert sorted(p.name for p in layout.root.iterdir() if p.name != ".stockade") == before
    assert (layout.work / "f.txt").read_text() == "moving"
    assert not (layout.data / "moved.txt").exists()
    layout.untouched()


async def test_max_files_caps_new_entries_per_call(deployment, layout):
    deploy(deployment, layout, max_files=5)
    async with deployment.client() as client:
        files = attempts(await client.call_tool("fill_files", {"count": 20}))
        dirs = attempts(await client.call_tool("fill_files", {"count": 20, "dirs": True}))
        await benign(client)
    for run in (files, dirs):
        assert run["created"] == 5
        assert run["stopped_by"]["kind"] == "QuotaExceeded", run
    # Opening a file that exists with `create` is not a creation.
    assert files["reopen_existing"]["ok"], files
    # The cap is per call: the second call had its own five.
    created = sorted(layout.work.iterdir())
    assert len(created) == 10
    assert sum(p.is_dir() for p in created) == 5


# How each growth reports the cap. wasi-libc's write() goes through an
# output stream and turns any stream failure into EIO without asking for the
# error code (it does not import filesystem-error-code); set-size, a direct
# descriptor write, and stream users that ask all see file-too-large.
GROWTHS = {
    "write": "Uncategorized",
    "append": "Uncategorized",
    "seek": "Uncategorized",
    "set_len": "FileTooLarge",
    "pwrite": "file-too-large",
    "append_stream": "file-too-large",
    "two_appenders": "file-too-large",
}


async def test_max_file_size_holds_however_a_file_grows(deployment, layout):
    cap = 64 * 1024
    deploy(deployment, layout, max_file_size="64KiB")
    big = layout.work / "big.bin"
    outcomes = {}
    async with deployment.client() as client:
        for how in GROWTHS:
            big.unlink(missing_ok=True)
            outcomes[how] = attempts(await client.call_tool("grow_file", {"how": how, "bytes": 3 * cap}))
            outcomes[how]["host_size"] = big.stat().st_size if big.exists() else 0
        big.unlink(missing_ok=True)
        within = attempts(await client.call_tool("grow_file", {"how": "append", "bytes": cap}))
        await benign(client)
    for how, run in outcomes.items():
        assert run["host_size"] <= cap, run
        assert run["error"] is not None, run
        assert run["error"]["kind"] == GROWTHS[how], run
    assert within["error"] is None and big.stat().st_size == cap


async def test_caps_have_defaults_and_do_not_limit_ordinary_use(deployment, layout):
    deploy(deployment, layout)
    async with deployment.client() as client:
        files = attempts(await client.call_tool("fill_files", {"count": 50}))
        grown = attempts(await client.call_tool("grow_file", {"how": "write", "bytes": 1 << 20}))
    assert files["created"] == 50 and files["stopped_by"] is None
    assert grown["error"] is None and grown["size"] == 1 << 20


async def test_files_example_tool_under_caps(deployment, layout):
    (layout.data / "README.txt").write_text("sample data\n")
    (layout.work / "a.txt").write_text("a")
    # max_files = 0: existing files may change, no new entry may appear.
    deployment.add_tool("files", "files", fs=layout.grants(max_files=0, max_file_size="1KiB"))
    async with deployment.client() as client:
        small = await client.call_tool("write_file", {"path": "/scratch/a.txt", "content": "b" * 1000})
        more = await client.call_tool("write_file", {"path": "/scratch/a.txt", "content": "c" * 24, "append": True})
        too_big = await client.call_tool("write_file", {"path": "/scratch/a.txt", "content": "d", "append": True})
        new = await client.call_tool("write_file", {"path": "/scratch/new.txt", "content": "x"})
        ro = await client.call_tool("write_file", {"path": "/data/x.txt", "content": "x"})
        read = await client.call_tool("read_file", {"path": "/scratch/a.txt"})
    assert not small.is_error, text_of(small)
    assert not more.is_error, text_of(more)
    # wasi-libc reports the refused stream write as EIO (see GROWTHS).
    assert too_big.is_error and "i/o error" in text_of(too_big).lower(), text_of(too_big)
    assert new.is_error and "quota" in text_of(new).lower(), text_of(new)
    assert ro.is_error and "permission denied" in text_of(ro).lower(), text_of(ro)
    assert not read.is_error and text_of(read) == "b" * 1000 + "c" * 24
    assert sorted(p.name for p in layout.work.iterdir()) == ["a.txt"]
    assert not (layout.data / "x.txt").exists()


# Targets that could lead out of the grant from somewhere inside it, and
# link paths at several depths (so a target that fits one depth is tried at
# another, as a later rename could do).
ESCAPING_TARGETS = [
    "..",
    "../secret",
    "../../../../../../etc/passwd",
    "sub/../../secret",
    "./../secret",
    "sub/..",
    "/etc/passwd",
    "/",
    "",
]


async def test_a_symlink_that_could_lead_out_is_never_created(deployment, layout):
    deploy(deployment, layout)
    (layout.work / "sub").mkdir()
    links = [[target, f"{where}esc{i}"] for i, target in enumerate(ESCAPING_TARGETS) for where in ("", "sub/")]
    async with deployment.client() as client:
        refused = attempts(await client.call_tool("plant_links", {"links": links}))
        fine = attempts(await client.call_tool("plant_links", {"links": [["inside.txt", "ok1"], ["sub/x", "ok2"], ["./y", "sub/ok3"]]}))
        await benign(client)
    assert len(refused) == 2 * len(ESCAPING_TARGETS)
    for a in refused:
        assert not a["ok"] and a["kind"] in ("not-permitted", "no-entry"), a
    assert all(a["ok"] for a in fine), fine
    left = sorted(str(p.relative_to(layout.work)) for p in layout.work.rglob("*") if p.is_symlink())
    assert left == ["ok1", "ok2", "sub/ok3"]
    layout.untouched()


async def test_quotas_hold_across_calls_and_a_restart(deployment, layout):
    # Twelve entries in all over ten calls, whatever the per-call cap (5)
    # allows; the example `files` tool shares the grant and names the refusal.
    deploy(deployment, layout, max_files=5, quota_files=12)
    deployment.add_tool("files", "files", fs=layout.grants(quota_files=12), tool={"prefix": "f_"})
    async with deployment.client() as client:
        runs = [attempts(await client.call_tool("fill_files", {"count": 2, "prefix": f"r{i}"})) for i in range(10)]
        refused = await client.call_tool("f_write_file", {"path": "/scratch/one-more.txt", "content": "x"})
    assert [r["created"] for r in runs] == [2, 2, 2, 2, 2, 2, 0, 0, 0, 0]
    assert all(r["stopped_by"]["kind"] == "QuotaExceeded" for r in runs[6:]), runs[6:]
    assert len(list(layout.work.rglob("*"))) == 12
    assert refused.is_error
    assert "quota: /scratch quota_files (12 entries)" in text_of(refused), text_of(refused)
    # A new process measures the directory: the quota is still spent...
    async with deployment.client() as client:
        again = attempts(await client.call_tool("fill_files", {"count": 5, "prefix": "after"}))
        # ...until something is removed.
        for name in sorted(p.name for p in layout.work.iterdir())[:3]:
            (layout.work / name).unlink()
        freed = attempts(await client.call_tool("fill_files", {"count": 5, "prefix": "freed"}))
        await benign(client)
    assert again["created"] == 0 and again["stopped_by"]["kind"] == "QuotaExceeded", again
    assert freed["created"] == 3, freed
    assert len(list(layout.work.rglob("*"))) == 12


async def test_quota_bytes_counts_every_way_a_directory_grows(deployment, layout):
    cap = 64 * 1024
    deploy(deployment, layout, quota_bytes="100KiB")
    (layout.work / "old.bin").write_bytes(b"o" * 30 * 1024)
    outcomes = {}
    async with deployment.client() as client:
        for how in GROWTHS:
            (layout.work / "big.bin").unlink(missing_ok=True)
            outcomes[how] = attempts(await client.call_tool("grow_file", {"how": how, "bytes": 3 * cap}))
            total = sum(p.stat().st_size for p in layout.work.rglob("*") if p.is_file())
            assert total <= 100 * 1024, (how, total)
        # Within the quota, a file may be rewritten again and again: what
        # a truncation frees is given back.
        (layout.work / "big.bin").unlink(missing_ok=True)
        rewrites = [attempts(await client.call_tool("grow_file", {"how": "write", "bytes": cap})) for _ in range(3)]
        await benign(client)
    for how, run in outcomes.items():
        assert run["error"] is not None, (how, run)
    assert outcomes["set_len"]["error"]["kind"] == "QuotaExceeded", outcomes["set_len"]
    assert outcomes["pwrite"]["error"]["kind"] == "quota", outcomes["pwrite"]
    assert all(r["error"] is None for r in rewrites), rewrites
    assert (layout.work / "big.bin").stat().st_size == cap
