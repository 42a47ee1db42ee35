"""A real server with TLS for this package: `voxserve serve --ssl-certfile --ssl-keyfile` on a
self-signed certificate made at runtime for 127.0.0.1 and localhost.

Started and stopped through the e2e package's helpers (health over https with the certificate
as the only trusted CA, SIGINT, no Ray left behind). Package scope: the e2e server is stopped
by the time this one starts, since only one Ray may run at a time.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.e2e.conftest import API_KEY, free_port, start_server, stop_server


@dataclass(frozen=True)
class TlsServer:
    host: str
    port: int
    api_key: str
    certfile: Path
    log: Path

    @property
    def https(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def wss(self) -> str:
        return f"wss://{self.host}:{self.port}"

    def client_context(self) -> ssl.SSLContext:
        """Verifies the server against its own certificate and nothing else."""
        return ssl.create_default_context(cafile=str(self.certfile))


def write_self_signed(directory: Path) -> tuple[Path, Path]:
    """A self-signed P-256 certificate valid for a day, for IP 127.0.0.1 and DNS localhost, as
    `openssl req -x509` would make one; returns (certificate PEM, private key PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "voxserve test")])
    now = datetime.datetime.now(datetime.UTC)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(public)
        .serial_number(x509.random_serial_number())
        # an hour back: a client whose clock is a little behind still accepts it
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = directory / "cert.pem", directory / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    keyfile.chmod(0o600)
    return certfile, keyfile


@pytest.fixture(scope="package")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    root = tmp_path_factory.mktemp("tls_server")
    certfile, keyfile = write_self_signed(root)
    config = root / "options.yaml"
    # greedy and seeded like the e2e server, so the one answer these tests ask for is fixed
    config.write_text(f"server:\n  api_keys: [{API_KEY}]\n  metrics_port: {free_port()}\n"
                      "llm:\n  seed: 1234\n  temperature: 0.0\n")
    log = root / "server.log"
    srv = TlsServer("127.0.0.1", free_port(), API_KEY, certfile, log)
    proc = start_server(["--port", str(srv.port), "--config", str(config),
                         "--ssl-certfile", str(certfile), "--ssl-keyfile", str(keyfile)],
                        log, f"{srv.https}/health", tls=srv.client_context())
    yield srv
    stop_server(proc, log)
