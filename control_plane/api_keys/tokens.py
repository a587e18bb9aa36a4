"""The key format: a scope prefix, 32 random base62 characters, a 6-character checksum.

The prefix lets people and secret scanners recognise a leaked key at a glance; the CRC32
checksum lets malformed keys be refused without touching the database. Keys carry ~190
bits of entropy, so a plain SHA-256 is the right stored form (a slow password hash would
add latency to every request and no security).
"""

from __future__ import annotations

import hashlib
import secrets
import string
import zlib
from typing import Literal

Scope = Literal["admin", "tenant"]
PREFIXES: dict[Scope, str] = {"admin": "mf_admin_", "tenant": "mf_live_"}
_ALPHABET = string.digits + string.ascii_letters
_BODY_LENGTH = 32
_CHECKSUM_LENGTH = 6


def _base62(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, digit = divmod(number, 62)
        chars.append(_ALPHABET[digit])
    return "".join(reversed(chars))


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode()), _CHECKSUM_LENGTH)


def generate_key(scope: Scope) -> str:
    body = "".join(secrets.choice(_ALPHABET) for _ in range(_BODY_LENGTH))
    return f"{PREFIXES[scope]}{body}{_checksum(body)}"


def key_scope(key: str) -> Scope | None:
    """The scope a well-formed key claims, or None if the key is malformed."""
    for scope, prefix in PREFIXES.items():
        if not key.startswith(prefix):
            continue
        rest = key[len(prefix) :]
        body, checksum = rest[:_BODY_LENGTH], rest[_BODY_LENGTH:]
        if (
            len(rest) == _BODY_LENGTH + _CHECKSUM_LENGTH
            and all(c in _ALPHABET for c in rest)
            and secrets.compare_digest(checksum, _checksum(body))
        ):
            return scope
    return None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_hint(key: str) -> str:
    """What lists show instead of the key: the prefix and the last four characters."""
    prefix = next(p for p in PREFIXES.values() if key.startswith(p))
    return f"{prefix}…{key[-4:]}"
