"""The agent's own key and certificate, and trust in the control plane's CA by its pin.

The key is made here and never leaves the machine (mode 0600). The CA certificate is
learned at first contact from the TLS chain the enrollment listener presents, and accepted
only if the SHA-256 of its public key equals the pin from agent.toml (as kubeadm's
``--discovery-token-ca-cert-hash`` does). The work that needs ``cryptography`` (the key, the
CSR, checking the chain's signature) lives in ``agent.pki``, which the daemon runs as a
short-lived helper process (``in_helper``) so the package never stays loaded in it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from agent import der
from agent.files import write_atomically

pem_pin = der.pem_pin  # the pin of a PEM certificate, without cryptography


# agent.pki is found where this package was (a venv, an editable install, PYTHONPATH)
_PACKAGE_PARENT = str(Path(__file__).resolve().parents[1])


class TrustError(Exception):
    """The control plane's CA does not match the pin, or could not be fetched."""


class HelperError(OSError):
    """The short-lived ``agent.pki`` helper failed (like a failed disk, retried later)."""


async def in_helper(request: dict[str, str]) -> dict[str, str]:
    """``agent.pki.answer(request)`` in a short-lived Python process: this one never loads
    ``cryptography``. Its TrustError comes back as one."""
    path = os.pathsep.join(p for p in (_PACKAGE_PARENT, os.environ.get("PYTHONPATH")) if p)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agent.pki",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": path},
    )
    out, err = await process.communicate(json.dumps(request).encode())
    if process.returncode != 0:
        tail = err.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise HelperError(f"agent.pki {request.get('op')}: exit {process.returncode}: {tail[0]}")
    answer: dict[str, str] = json.loads(out)
    if "error" in answer:
        raise TrustError(answer["error"])
    return answer


async def pinned_ca(address: str, pin: str) -> bytes:
    """``fetch_pinned_ca`` in the helper."""
    return (await in_helper({"op": "pinned-ca", "address": address, "pin": pin}))["ca_pem"].encode()


async def key_and_csr(hostname: str) -> tuple[bytes, bytes]:
    """``new_key_and_csr`` in the helper."""
    answer = await in_helper({"op": "csr", "hostname": hostname})
    return answer["key_pem"].encode(), answer["csr_pem"].encode()


def fetch_pinned_ca(address: str, pin: str, timeout: float = 10.0) -> bytes:
    """The CA certificate (PEM) from ``address``'s TLS chain whose key matches ``pin``
    (in this process: loads ``cryptography``)."""
    from agent import pki

    return pki.fetch_pinned_ca(address, pin, timeout)


def new_key_and_csr(hostname: str) -> tuple[bytes, bytes]:
    """A fresh EC P-256 key (PEM) and a CSR for it (in this process: loads ``cryptography``)."""
    from agent import pki

    return pki.new_key_and_csr(hostname)


@dataclass(frozen=True)
class Credentials:
    server_id: str
    key_pem: bytes
    certificate_pem: bytes
    ca_pem: bytes

    @property
    def not_before(self) -> datetime:
        return der.validity(self.certificate_pem)[0]

    @property
    def not_after(self) -> datetime:
        return der.validity(self.certificate_pem)[1]


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
