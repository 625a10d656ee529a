"""An independent check for credential leaks, written apart from the
runtime's scrubber so that a gap in one is not hidden by the same gap in
the other: any run of K characters of a value, in the raw text or after
undoing percent-encoding, HTML/XML references, JSON/JS escapes or UTF-16,
in any case, reversed, as hex, or as base64 at any alignment (line breaks
and the URL-safe alphabet included)."""

from __future__ import annotations

import base64
import html
import re
from urllib.parse import unquote

K = 8


def _unescape_js(text: str) -> str:
    text = re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), text)
    return re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), text)


def _views(data: bytes) -> dict[str, str]:
    text = data.decode("latin-1")
    views = {
        "raw": text,
        "percent-decoded": unquote(text, encoding="latin-1"),
        "html-unescaped": html.unescape(text),
        "js-unescaped": _unescape_js(text).replace("\\/", "/"),
        "nul-stripped": data.replace(b"\0", b"").decode("latin-1"),
    }
    for codec in ("utf-16-le", "utf-16-be"):
        for start in (0, 1):
            views[f"{codec}@{start}"] = data[start:].decode(codec, errors="ignore")
    return views


def _base64_runs(value: bytes, k: int) -> set[str]:
    """Base64 text that any k consecutive bytes of `value` always produce."""
    run = 4 * max((k - 2) // 3, 1)
    runs = set()
    for shift in range(3):
        rest = value[shift:]
        encoded = base64.b64encode(rest[: len(rest) // 3 * 3]).decode()
        for start in range(0, len(encoded) - run + 1, 4):
            runs.add(encoded[start : start + run])
    return runs


def find_leaks(data: bytes | str, value: str, k: int = K) -> list[str]:
    """Every way `data` still holds a piece of `value`; empty when clean."""
    if isinstance(data, str):
        data = data.encode("utf-8", errors="surrogatepass")
    pieces = [value[i : i + k] for i in range(len(value) - k + 1)]
    b64_runs = _base64_runs(value.encode(), k)
    found = []
    for name, view in _views(data).items():
        lower = view.lower()
        for piece in pieces:
            if piece.lower() in lower:
                found.append(f"{name}: {piece!r}")
            if piece[::-1].lower() in lower:
                found.append(f"{name}, reversed: {piece!r}")
            if piece.encode().hex() in lower:
                found.append(f"{name}, hex: {piece!r}")
        compact = re.sub(r"\s", "", view).replace("-", "+").replace("_", "/")
        for run in b64_runs:
            if run in compact:
                found.append(f"{name}, base64: {run!r}")
    return found
