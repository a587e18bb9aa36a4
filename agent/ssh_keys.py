"""The admin SSH key MailFleet keeps on a VPS: one line in root's ``authorized_keys``.

The line is recognised by its comment (``mailfleet-<server id>``); rotation replaces it and
leaves every other line — keys the customer added — as it was. The file is replaced
atomically (write, fsync, rename) so a crash never leaves it half-written.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from pathlib import Path
from typing import Any

from agent.config import under_root
from agent.files import write_atomically

AUTHORIZED_KEYS = Path("/root/.ssh/authorized_keys")
_KEY = re.compile(r"^ssh-ed25519 [A-Za-z0-9+/]+={0,2} (?P<comment>mailfleet-[0-9a-f-]{36})$")


class NotAnAdminKey(ValueError):
    """The payload is not a MailFleet admin key line."""


def _blob(public_key: str) -> bytes:
    """The key's wire-format blob, which must say ssh-ed25519 too (RFC 8709)."""
    try:
        blob = base64.b64decode(public_key.split()[1], validate=True)
    except (binascii.Error, IndexError):
        raise NotAnAdminKey("public_key: the key is not valid base64") from None
    if not blob.startswith(b"\x00\x00\x00\x0bssh-ed25519"):
        raise NotAnAdminKey("public_key: the key blob is not an ssh-ed25519 key")
    return blob


def fingerprint(public_key: str) -> str:
    digest = hashlib.sha256(_blob(public_key)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def authorize(root: Path, public_key: str) -> dict[str, Any]:
    """Make ``public_key`` the only MailFleet key in root's authorized_keys."""
    line = public_key.strip()
    match = _KEY.match(line)
    if match is None:
        raise NotAnAdminKey("public_key: expected 'ssh-ed25519 <base64> mailfleet-<server id>'")
    comment = match["comment"]
    print_ = fingerprint(line)
    path = under_root(root, AUTHORIZED_KEYS)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        lines = []
    kept = [existing for existing in lines if not existing.rstrip().endswith(" " + comment)]
    replaced = len(lines) - len(kept)
    write_atomically(path, "".join(f"{existing}\n" for existing in [*kept, line]), 0o600)
    return {"path": str(AUTHORIZED_KEYS), "fingerprint": print_, "replaced": replaced}
