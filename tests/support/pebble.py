"""A real Pebble ACME server on loopback, resolving DNS-01 challenges against a test Knot.

Debian's pebble ships no certificate for its own HTTPS listeners, so each server gets a
throwaway CA and a leaf for 127.0.0.1/localhost made here; clients trust ``ca_bundle``.
Pebble's *issuing* root is different: it is generated anew at every start and fetched from the
management API (``root_pem()``).
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import os
import shutil
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support.knot import KnotServer
from tests.support.ports import free_port
from tests.support.processes import Running, started_on_fresh_ports

HOST = "127.0.0.1"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
START_ATTEMPTS = 3  # a free_port() pick can be taken by another xdist worker before pebble binds
ENVIRONMENT = {
    "PEBBLE_VA_NOSLEEP": "1",  # no random 0-15 s sleep before each validation
    "PEBBLE_WFE_NONCEREJECT": "0",  # no random badNonce rejections
    "PEBBLE_AUTHZREUSE": "0",  # every order gets fresh authorizations (and challenges)
}


class PebbleError(RuntimeError):
    """Pebble did not start; the message carries its output."""


class _PortTaken(PebbleError):
    """Pebble could not listen on a port: start again on other ones."""


def _write_tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a leaf for 127.0.0.1 and localhost, valid for a day: (ca, cert, key) PEMs."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "MailFleet test Pebble TLS CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = (directory / n for n in ("ca.pem", "cert.pem", "key.pem"))
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return ca_path, cert_path, key_path


class Pebble:
    """One pebble process; its config, TLS files and output live in ``directory``, which
    ``stop()`` removes."""

    def __init__(self, directory: Path, dns_server: tuple[str, int]) -> None:
        self.directory = directory
        self.dns_server = dns_server
        self.ca_bundle, cert, key = _write_tls_files(directory)
        self.port = free_port()
        self.management_port = free_port()
        # Where Pebble's VA connects for HTTP-01 / TLS-ALPN-01 (it listens on neither).
        self.http_port = free_port()
        self.tls_port = free_port()
        self.config_path = directory / "pebble-config.json"
        config = {
            "pebble": {
                "listenAddress": f"{HOST}:{self.port}",
                "managementListenAddress": f"{HOST}:{self.management_port}",
                "certificate": str(cert),
                "privateKey": str(key),
                "httpPort": self.http_port,
                "tlsPort": self.tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": False,
            }
        }
        self.config_path.write_text(json.dumps(config, indent=2))
        self._running: Running | None = None
        self._log: list[str] = []

    @property
    def directory_url(self) -> str:
        return f"https://{HOST}:{self.port}/dir"

    @property
    def management_url(self) -> str:
        return f"https://{HOST}:{self.management_port}"

    def ssl_context(self) -> ssl.SSLContext:
        """Trusts Pebble's listeners (ACME and management) and nothing else."""
        return ssl.create_default_context(cafile=str(self.ca_bundle))

    def client(self) -> httpx.Client:
        """An HTTPS client for Pebble that ignores proxy settings (traffic stays on loopback)."""
        return httpx.Client(verify=self.ssl_context(), trust_env=False, timeout=5)

    def directory_json(self) -> dict[str, Any]:
        with self.client() as client:
            response = client.get(self.directory_url)
            response.raise_for_status()
            directory: dict[str, Any] = response.json()
            return directory

    def root_pem(self, index: int = 0) -> str:
        """The root Pebble signs certificates under (regenerated at every start)."""
        return self._management(f"/roots/{index}")

    def intermediate_pem(self, index: int = 0) -> str:
        return self._management(f"/intermediates/{index}")

    def _management(self, path: str) -> str:
        with self.client() as client:
            response = client.get(self.management_url + path)
            response.raise_for_status()
            return response.text

    def start(self) -> None:
        """Run pebble with a clean environment: no PEBBLE_* from the caller and no proxies,
        which its validation client would otherwise use."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("PEBBLE_") and not k.lower().endswith("_proxy")
        }
        env.update(ENVIRONMENT)
        host, port = self.dns_server
        process = subprocess.Popen(
            ["pebble", "-config", str(self.config_path), "-dnsserver", f"{host}:{port}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
            cwd=self.directory,
            start_new_session=True,
        )
        self._running = Running(process)

    def log(self) -> str:
        if self._running is not None:
            self._log = self._running.output()
        return "\n".join(self._log)

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Until the directory answers over verified HTTPS (Pebble first makes its RSA CA keys,
        which takes about a second)."""
        deadline = time.monotonic() + timeout
        with self.client() as client:
            for _ in range(int(timeout / 0.05) + 1):
                assert self._running is not None
                if self._running.process.poll() is not None:
                    log = self.log()
                    error = _PortTaken if "address already in use" in log else PebbleError
                    raise error(f"pebble exited:\n{log}")
                try:
                    if client.get(self.directory_url, timeout=1).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)
        raise PebbleError(f"pebble did not answer within {timeout} s:\n{self.log()}")

    def stop(self) -> None:
        """SIGTERM, SIGKILL after STOP_TIMEOUT, then remove the directory."""
        try:
            if self._running is not None:
                self._running.stop(timeout=STOP_TIMEOUT)
                self._log = self._running.output()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)


@contextmanager
def run_pebble(dns_server: tuple[str, int]) -> Iterator[Pebble]:
    """Pebble whose VA resolves everything (DNS-01 TXT lookups included) at ``dns_server``."""

    def start(stack: contextlib.ExitStack) -> Pebble:
        server = Pebble(Path(tempfile.mkdtemp(prefix="mailfleet-pebble-")), dns_server)
        stack.callback(server.stop)
        server.start()
        server.wait_ready()
        return server

    with started_on_fresh_ports(start, _PortTaken, START_ATTEMPTS) as server:
        yield server


@pytest.fixture
def pebble(knot_primary: KnotServer) -> Iterator[Pebble]:
    """Pebble resolving against the test's ``knot_primary``."""
    with run_pebble(knot_primary.address) as server:
        yield server
