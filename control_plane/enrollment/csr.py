"""Checks on an agent's certificate signing request before Vault signs it."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from control_plane.errors import InvalidInput


def validate_csr(csr_pem: bytes) -> str:
    """The CSR as text, if it parses, is self-signed correctly and uses a strong key."""
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError:
        raise InvalidInput("csr_pem is not a PEM certificate signing request") from None
    if not csr.is_signature_valid:
        raise InvalidInput("the CSR's signature does not match its key")
    key = csr.public_key()
    strong = (
        isinstance(key, ed25519.Ed25519PublicKey)
        or (isinstance(key, ec.EllipticCurvePublicKey) and key.curve.key_size >= 256)
        or (isinstance(key, rsa.RSAPublicKey) and key.key_size >= 2048)
    )
    if not strong:
        raise InvalidInput("the CSR key must be Ed25519, EC P-256 or larger, or RSA 2048+")
    return csr_pem.decode()
