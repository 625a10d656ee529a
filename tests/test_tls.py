"""TLS on the HTTP listener: certificates made at test time, the MCP client
over https, certificate reload without a restart, and client certificates
(mTLS) whose subject names the client."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import socket
import ssl
import time
from pathlib import Path

import httpx2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from httpserve import INITIALIZE, MCP_HEADERS, HttpStockade, api_key, mcp_client

pytestmark = pytest.mark.anyio


def name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def issue(subject: str, issuer_name: str, issuer_key, *, ca=False, server=False, key=None):
    key = key or ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name(subject))
        .issuer_name(name(issuer_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    if not ca:
        usage = x509.oid.ExtendedKeyUsageOID.SERVER_AUTH if server else x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    cert = builder.sign(issuer_key or key, hashes.SHA256())
    return cert, key


def write_pair(directory: Path, stem: str, cert, key) -> tuple[Path, Path]:
    cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class Pki:
    """A CA, a server certificate for 127.0.0.1, and a client certificate."""

    def __init__(self, directory: Path):
        self.dir = directory
        ca_key = ec.generate_private_key(ec.SECP256R1())
        self.ca, _ = issue("Stockade Test CA", "Stockade Test CA", ca_key, ca=True, key=ca_key)
        self.ca_key = ca_key
        self.ca_path = directory / "ca.pem"
        self.ca_path.write_bytes(self.ca.public_bytes(serialization.Encoding.PEM))
        self.server_cert, self.server_key = self.server("server-one")
        client, client_key = issue("ci-runner", "Stockade Test CA", ca_key)
        self.client = write_pair(directory, "client", client, client_key)

    def server(self, common_name: str) -> tuple[Path, Path]:
        cert, key = issue(common_name, "Stockade Test CA", self.ca_key, server=True)
        return write_pair(self.dir, "server", cert, key)

    def context(self, client_cert=False) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_path))
        if client_cert:
            context.load_cert_chain(*map(str, self.client))
        return context


def served_certificate(port: int, context: ssl.SSLContext) -> tuple[str, str]:
    """(common name of the certificate the server presents, TLS version)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            cert = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))
            return cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value, tls.version()


@pytest.fixture
def pki(tmp_path):
    return Pki(tmp_path)


def test_the_mcp_client_works_over_tls_and_a_new_certificate_is_served_without_a_restart(deployment, pki):
    deployment.add_tool("text-kit", "text_kit")
    key, entry = api_key("desk")
    deployment.auth = {"api_keys": [entry]}
    deployment.http = {"tls": {"cert_file": str(pki.server_cert), "key_file": str(pki.server_key)}}
    with HttpStockade(deployment, scheme="https") as server:

        async def call():
            async with mcp_client(server.url, key, "legacy", verify=pki.context()) as client:
                return await client.call_tool("transform", {"text": "tls", "op": "upper"})

        assert asyncio.run(call()).content[0].text == "TLS"
        first, version = served_certificate(server.port, pki.context())
        # Plain HTTP to the TLS port gets no MCP answer.
        with pytest.raises(httpx2.HTTPError):
            httpx2.post(f"http://127.0.0.1:{server.port}/mcp", json=INITIALIZE, headers=MCP_HEADERS, timeout=5)
        time.sleep(1.1)  # a new modification time
        pki.server("server-two")
        deadline = time.time() + 10
        while served_certificate(server.port, pki.context())[0] != "server-two" and time.time() < deadline:
            time.sleep(0.5)
        second, _ = served_certificate(server.port, pki.context())
        # A broken file is logged and the served certificate kept.
        time.sleep(1.1)
        pki.server_cert.write_text("not a certificate")
        time.sleep(3)
        kept, _ = served_certificate(server.port, pki.context())
        log = server.wait_for("TLS certificate not reloaded")
    assert (first, second, kept) == ("server-one", "server-two", "server-two")
    assert version in ("TLSv1.3", "TLSv1.2")
    assert "TLS certificate reloaded" in log and "TLS certificate not reloaded, the old one stays" in log


def test_required_client_certificates_name_the_client(deployment, pki):
    deployment.add_tool("text-kit", "text_kit")
    key, entry = api_key("desk", user="ann")
    deployment.auth = {"api_keys": [entry]}
    deployment.http = {"tls": {"cert_file": str(pki.server_cert), "key_file": str(pki.server_key),
                               "client_ca_file": str(pki.ca_path), "client_certs": "required"}}
    with HttpStockade(deployment, scheme="https") as server:
        with pytest.raises((httpx2.HTTPError, ssl.SSLError)):
            httpx2.post(server.url, json=INITIALIZE, headers={**MCP_HEADERS, "Authorization": f"Bearer {key}"},
                        verify=pki.context(), timeout=10)

        async def call():
            async with mcp_client(server.url, key, "2026-07-28", verify=pki.context(client_cert=True)) as client:
                return await client.call_tool("transform", {"text": "m", "op": "upper"})

        assert asyncio.run(call()).content[0].text == "M"
        # A certificate alone is not a credential.
        bare = httpx2.post(server.url, json=INITIALIZE, headers=MCP_HEADERS, verify=pki.context(client_cert=True), timeout=10)
        records = server.audit()
    assert bare.status_code == 401
    call_record = [r for r in records if r["event"] == "call_finished"][-1]
    assert (call_record["client"], call_record["user"]) == ("ci-runner", "ann")
