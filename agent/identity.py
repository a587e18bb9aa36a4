"""The agent's own key and certificate, and trust in the control plane's CA by its pin.

The key is made here and never leaves the machine (mode 0600). The CA certificate is
learned at first contact from the TLS chain the enrollment listener presents, and accepted
only if the SHA-256 of its public key equals the pin from agent.toml (as kubeadm's
``--discovery-token-ca-cert-hash`` does).
"""

from __future__ import annotations

import hashlib
import socket
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent.files import write_atomically


class TrustError(Exception):
    """The control plane's CA does not match the pin, or could not be fetched."""


def spki_pin(cert: x509.Certificate) -> str:
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return f"sha256:{hashlib.sha256(spki).hexdigest()}"


def pem_pin(pem: bytes) -> str:
    return spki_pin(x509.load_pem_x509_certificate(pem))


def _peer_chain(sock: ssl.SSLSocket) -> list[bytes]:
    """DER certificates the peer sent (public API from Python 3.13, private before)."""
    getter = getattr(sock, "get_unverified_chain", None)
    if getter is None:
        getter = sock._sslobj.get_unverified_chain  # type: ignore[attr-defined]
    chain = getter() or []
    der = ssl._ssl.ENCODING_DER  # type: ignore[attr-defined]
    return [c if isinstance(c, bytes) else c.public_bytes(der) for c in chain]


def fetch_pinned_ca(address: str, pin: str, timeout: float = 10.0) -> bytes:
    """The CA certificate (PEM) from ``address``'s TLS chain whose key matches ``pin``."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # nothing is trusted until the pin matches below
    try:
        with (
            socket.create_connection((host, int(port)), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            chain = [x509.load_der_x509_certificate(der) for der in _peer_chain(tls)]
    except (OSError, ssl.SSLError) as exc:
        raise TrustError(f"cannot reach {address}: {exc}") from None
    if not chain:
        raise TrustError(f"{address} presented no certificate")
    leaf = chain[0]
    for candidate in chain[1:]:
        if spki_pin(candidate) != pin:
            continue
        try:
            leaf.verify_directly_issued_by(candidate)
        except (ValueError, TypeError, Exception) as exc:  # InvalidSignature has no base here
            raise TrustError(
                f"{address}'s certificate is not signed by the pinned CA: {exc}"
            ) from None
        return candidate.public_bytes(serialization.Encoding.PEM)
    raise TrustError(f"the CA presented by {address} does not match ca_pin {pin}")


@dataclass(frozen=True)
class Credentials:
    server_id: str
    key_pem: bytes
    certificate_pem: bytes
    ca_pem: bytes

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.certificate_pem)

    @property
    def not_before(self) -> datetime:
        return self.certificate.not_valid_before_utc.astimezone(UTC)

    @property
    def not_after(self) -> datetime:
        return self.certificate.not_valid_after_utc.astimezone(UTC)


class IdentityStore:
    """Files under the state directory: key, certificate, CA, server id, spent token hash."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir / "identity"

    def _path(self, name: str) -> Path:
        return self.dir / name

    def load(self) -> Credentials | None:
        try:
            return Credentials(
                server_id=self._path("server_id").read_text().strip(),
                key_pem=self._path("agent.key").read_bytes(),
                certificate_pem=self._path("agent.crt").read_bytes(),
                ca_pem=self._path("ca.crt").read_bytes(),
            )
        except FileNotFoundError:
            return None

    def server_id(self) -> str:
        """The id of an earlier enrollment, if any (kept even after revocation)."""
        try:
            return self._path("server_id").read_text().strip()
        except FileNotFoundError:
            return ""

    def save(self, credentials: Credentials) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomically(self._path("agent.key"), credentials.key_pem)
        write_atomically(self._path("agent.crt"), credentials.certificate_pem, 0o644)
        write_atomically(self._path("ca.crt"), credentials.ca_pem, 0o644)
        write_atomically(self._path("server_id"), credentials.server_id.encode() + b"\n", 0o644)

    def token_spent(self, token: str) -> bool:
        try:
            spent = self._path("spent_token").read_text().strip()
        except FileNotFoundError:
            return False
        return spent == hashlib.sha256(token.encode()).hexdigest()

    def mark_token_spent(self, token: str) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        digest = hashlib.sha256(token.encode()).hexdigest()
        write_atomically(self._path("spent_token"), digest.encode() + b"\n")


def new_key_and_csr(hostname: str) -> tuple[bytes, bytes]:
    """A fresh EC P-256 key (PEM, unencrypted, stored 0600) and a CSR for it."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname[:64] or "agent")])
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, csr.public_bytes(serialization.Encoding.PEM)
