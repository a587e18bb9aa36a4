"""``mailu.certs.install``: the mail host's certificate where MailU's front reads it.

With ``TLS_FLAVOR=cert`` MailU's front serves ``certs/cert.pem`` (the full chain) and
``certs/key.pem``. The control plane's gateway adds both from Vault at delivery. The key is
written 0600; the front is restarted only when something changed, so a repeated delivery
is free.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from agent.errors import CommandError
from agent.files import write_atomically
from agent.mailu.compose import Compose
from agent.mailu.install import COMPOSE_FILE, Progress, mailu_dir


def _checked(payload: dict[str, Any]) -> tuple[str, str, x509.Certificate]:
    cert, key = payload.get("cert_pem"), payload.get("key_pem")
    if not isinstance(cert, str) or not isinstance(key, str):
        raise CommandError("payload: cert_pem and key_pem were not delivered")
    try:
        leaf = x509.load_pem_x509_certificates(cert.encode())[0]
        private = serialization.load_pem_private_key(key.encode(), password=None)
    except ValueError as exc:
        raise CommandError(f"payload: not a PEM certificate chain and key ({exc})") from None
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if leaf.public_key().public_bytes(*spki) != private.public_key().public_bytes(*spki):
        raise CommandError("payload: the key does not belong to the certificate")
    return cert, key, leaf


async def install(root: Path, payload: dict[str, Any], progress: Progress) -> dict[str, Any]:
    cert, key, leaf = _checked(payload)
    certs = mailu_dir(root) / "certs"
    certs.mkdir(mode=0o755, parents=True, exist_ok=True)
    current = [(certs / name).read_text() if (certs / name).exists() else None
               for name in ("cert.pem", "key.pem")]  # fmt: skip
    changed = current != [cert, key]
    if changed:
        write_atomically(certs / "key.pem", key, 0o600)
        write_atomically(certs / "cert.pem", cert, 0o644)
    restarted = False
    if changed and (mailu_dir(root) / COMPOSE_FILE).exists():
        progress(60, "restarting MailU's front to serve the new certificate")
        compose = Compose(mailu_dir(root))
        await compose.check_engine()
        await compose.restart("front")
        restarted = True
    return {
        "changed": changed,
        "restarted_front": restarted,
        "serial": format(leaf.serial_number, "x"),
        "not_after": leaf.not_valid_after_utc.isoformat(),
    }
