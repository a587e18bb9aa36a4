"""A server's mail ports, stood in for by real listeners: aiosmtpd on the SMTP ports (STARTTLS
on 25 and 587, implicit TLS on 465) and an asyncio IMAP greeter over TLS on 993, with
certificates from a test CA made here (valid, expired, wrong name, short-lived).

``python -m tests.support.mail_ports ADDRESS CERT KEY`` serves the four standard ports on
ADDRESS until killed (printing ``ready``): the network-namespace test runs it inside one.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import ssl
import sys
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Sink
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from control_plane.health.probes import MailPorts

T = TypeVar("T")
IMAP_GREETING = b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] stand-in ready\r\n"


@dataclass(frozen=True)
class Leaf:
    """A server certificate and its key, as PEM files."""

    cert: Path
    key: Path
    not_after: dt.datetime

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


class TestCA:
    """A CA of the test's own: its certificate in ``ca_file`` is what the probes trust."""

    __test__ = False  # not a pytest class

    def __init__(self, directory: Path, name: str = "MailFleet test CA") -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = dt.datetime.now(dt.UTC)
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False
            )
            .sign(self._key, hashes.SHA256())
        )
        self.ca_file = directory / f"ca-{self._cert.serial_number:x}.pem"
        self.ca_file.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))
        self._issued = 0

    def issue(
        self,
        *names: str,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
    ) -> Leaf:
        """A server certificate for ``names`` (DNS names or IP addresses), 90 days by default."""
        now = dt.datetime.now(dt.UTC)
        not_before = not_before or now - dt.timedelta(hours=1)
        not_after = not_after or now + dt.timedelta(days=90)
        key = ec.generate_private_key(ec.SECP256R1())
        alt: list[x509.GeneralName] = []
        for name in names:
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                alt.append(x509.DNSName(name))
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
            .sign(self._key, hashes.SHA256())
        )
        self._issued += 1
        base = self.directory / f"leaf-{self._issued}-{cert.serial_number:x}"
        cert_file, key_file = base.with_suffix(".crt"), base.with_suffix(".key")
        chain = cert.public_bytes(serialization.Encoding.PEM)
        cert_file.write_bytes(chain + self._cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return Leaf(cert_file, key_file, not_after)


class _ThreadLoop:
    """An event loop in a thread of its own, for listeners used from synchronous code."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


async def _greet(
    greeting: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """An IMAP server's first words; a LOGOUT gets its BYE."""
    try:
        writer.write(greeting)
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 10)
        if line.upper().endswith(b"LOGOUT\r\n"):
            tag = line.split(b" ", 1)[0]
            writer.write(b"* BYE logging out\r\n" + tag + b" OK LOGOUT completed\r\n")
            await writer.drain()
    except (OSError, TimeoutError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


@contextlib.contextmanager
def mail_stand_in(
    address: str,
    ports: MailPorts,
    leaf: Leaf,
    *,
    starttls: bool = True,
    imap_greeting: bytes = IMAP_GREETING,
    server_hostname: str = "mx.stand-in.test",
) -> Iterator[None]:
    """Listeners on ``address``: aiosmtpd with STARTTLS (unless ``starttls`` is False) on
    ``ports.smtp`` and ``ports.submission``, with implicit TLS on ``ports.submissions``, and
    an IMAP greeter over TLS on ``ports.imaps``. All are stopped on the way out."""
    context = leaf.server_context()
    controllers = [
        Controller(
            Sink(),
            hostname=address,
            port=port,
            server_hostname=server_hostname,
            ident="ESMTP stand-in",
            tls_context=context if starttls else None,
        )
        for port in (ports.smtp, ports.submission)
    ]
    controllers.append(
        Controller(
            Sink(),
            hostname=address,
            port=ports.submissions,
            server_hostname=server_hostname,
            ident="ESMTP stand-in",
            ssl_context=context,
        )
    )
    started: list[Controller] = []
    server: asyncio.Server | None = None
    imap = _ThreadLoop()
    try:
        for controller in controllers:
            controller.start()
            started.append(controller)
        server = imap.run(
            asyncio.start_server(
                lambda r, w: _greet(imap_greeting, r, w), address, ports.imaps, ssl=context
            )
        )
        yield
    finally:
        if server is not None:
            server.close()
        imap.stop()
        for controller in started:
            controller.stop()


def main() -> None:
    """Serve the standard ports on argv[1] with the certificate argv[2] and key argv[3]."""
    address, cert, key = sys.argv[1:4]
    leaf = Leaf(Path(cert), Path(key), dt.datetime.max.replace(tzinfo=dt.UTC))
    with mail_stand_in(address, MailPorts(), leaf):
        print("ready", flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
