"""Key, CSR and CA-chain work with ``cryptography``, run as a short-lived helper process.

The agent needs these only when it enrolls or renews its certificate (days apart), and
importing ``cryptography`` would keep ≈ 9 MiB resident in the daemon for good; so the daemon
runs ``python -m agent.pki`` with a JSON request on stdin and reads the JSON answer
(``identity.in_helper``). The functions are also called in-process by tests and tools.
"""

from __future__ import annotations

import hashlib
import json
import socket
import ssl
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent.identity import TrustError


def spki_pin(cert: x509.Certificate) -> str:
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return f"sha256:{hashlib.sha256(spki).hexdigest()}"


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


def answer(request: dict[str, str]) -> dict[str, str]:
    """One request: ``csr`` (hostname) → key and CSR; ``pinned-ca`` (address, pin) → CA.
    A TrustError is an answer (``error``), not a crash."""
    try:
        if request.get("op") == "csr":
            key_pem, csr_pem = new_key_and_csr(request["hostname"])
            return {"key_pem": key_pem.decode(), "csr_pem": csr_pem.decode()}
        if request.get("op") == "pinned-ca":
            return {"ca_pem": fetch_pinned_ca(request["address"], request["pin"]).decode()}
    except TrustError as exc:
        return {"error": str(exc)}
    raise ValueError(f"unknown request {request.get('op')!r}")


if __name__ == "__main__":
    json.dump(answer(json.load(sys.stdin)), sys.stdout)
