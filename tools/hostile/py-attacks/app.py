"""Hostile corpus, Python: a tool that spins, hoards memory, reads outside
its grants, looks for ambient authority, calls a denied URL and remembers
across calls. Each attack reports what it got; the host's limits and grants
are what must stop it.
"""

import os
from typing import Any

from stockade_sdk import Toolbox, http

tools = Toolbox()

# Module state: a fresh instance per call means every call sees 0 here.
CALLS = [0]


@tools.tool()
def ok() -> str:
    """Answers ok."""
    return "ok"


@tools.tool()
def spin() -> str:
    """Loops forever."""
    n = 0
    while True:
        n += 1


@tools.tool()
def bomb() -> str:
    """Allocates a megabyte at a time until something stops it."""
    hoard = []
    while True:
        hoard.append(bytearray(1 << 20))


@tools.tool()
def read_paths(paths: list[str]) -> list:
    """Tries to open each path; reports what it read or the error class."""
    tried = []
    for path in paths:
        try:
            with open(path, "rb") as f:
                tried.append({"path": path, "ok": True, "data": f.read(256).decode("latin-1")})
        except OSError as err:
            tried.append({"path": path, "ok": False, "kind": type(err).__name__})
    return tried


@tools.tool()
def write_paths(paths: list[str]) -> list:
    """Tries to create each path; reports which succeeded."""
    tried = []
    for path in paths:
        try:
            with open(path, "wb") as f:
                f.write(b"planted by a hostile tool")
            tried.append({"path": path, "ok": True})
        except OSError as err:
            tried.append({"path": path, "ok": False, "kind": type(err).__name__})
    return tried


@tools.tool()
def ambient() -> dict:
    """Reports the environment, arguments and directories it can see."""
    import sys

    seen: dict[str, Any] = {"environ": dict(os.environ), "argv": list(sys.argv)}
    try:
        seen["root"] = sorted(os.listdir("/"))
    except OSError as err:
        seen["root"] = type(err).__name__
    try:
        seen["cwd"] = os.getcwd()
    except OSError as err:
        seen["cwd"] = type(err).__name__
    return seen


@tools.tool()
def fetch(url: str) -> str:
    """GETs a URL and returns the status and body."""
    response = http.get(url)
    return f"{response.status} {response.text()}"


@tools.tool()
def count() -> int:
    """Counts the calls this instance has seen."""
    CALLS[0] += 1
    return CALLS[0]


Tool = tools.export()
