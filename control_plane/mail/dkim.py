"""DKIM keys: made by the control plane, private halves only in Vault, installed into MailU.

One 2048-bit RSA key per domain, stored at ``dkim/<domain>/<selector>``. MailU 2024.06
signs every domain of a server with one selector (``DKIM_SELECTOR``), so the selector is
the server's: ``mf<yyyymm>`` when it was ordered. A rotation (later) moves the server to a
new selector and re-keys its domains, while DNS publishes both selectors for the overlap.
"""

from __future__ import annotations

import base64
from datetime import datetime

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from control_plane.vault.client import Vault, secret_path

KEY_BITS = 2048


def default_selector(now: datetime) -> str:
    return f"mf{now:%Y%m}"


def key_path(domain: str, selector: str) -> str:
    return secret_path("dkim", domain, selector)


def dns_value(public_key: str) -> str:
    """The TXT record's value for ``<selector>._domainkey.<domain>``."""
    return f"v=DKIM1; k=rsa; p={public_key}"


async def ensure_key(vault: Vault, domain: str, selector: str) -> str:
    """The domain's public key (base64 SubjectPublicKeyInfo), made once (race-safe)."""

    def make() -> dict[str, str]:
        key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
        private = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,  # what Mailu itself writes
            serialization.NoEncryption(),
        ).decode()
        public = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return {"private_key": private, "public_key": base64.b64encode(public).decode()}

    return (await vault.ensure(key_path(domain, selector), make))["public_key"]
