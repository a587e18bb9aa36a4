"""API keys verified a moment ago, trusted for a few seconds.

Every API request checked its key in its own transaction (a pool checkout, a SELECT, a
COMMIT) before doing its work: under a stream of commands and long polls that was a third
of the plane's database round trips. A verified key is now trusted for
``api_key_cache_seconds``: a key revoked on this replica is dropped at once (``forget``),
one revoked elsewhere (another replica, the CLI) is refused within that time. Expiry is
checked on every use. Unknown keys are never remembered.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from control_plane.api_keys.models import ApiKey
from control_plane.db.base import utcnow

MAX_ENTRIES = 10_000  # keys in use at once; past that, trust ends early


@dataclass(frozen=True)
class VerifiedKey:
    """What a request needs of its key (not the ORM row: it outlives the session)."""

    id: uuid.UUID
    tenant_id: uuid.UUID | None
    name: str
    hint: str
    expires_at: datetime | None

    @classmethod
    def of(cls, record: ApiKey) -> VerifiedKey:
        return cls(record.id, record.tenant_id, record.name, record.hint, record.expires_at)


class KeyCache:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._trusted: dict[str, tuple[float, VerifiedKey]] = {}  # key hash -> (until, key)

    def get(self, key_hash: str) -> VerifiedKey | None:
        """The key verified less than the trusted time ago and not expired since, if any."""
        held = self._trusted.get(key_hash)
        if held is None:
            return None
        until, found = held
        if until <= self._clock() or (
            found.expires_at is not None and found.expires_at <= utcnow()
        ):
            self._trusted.pop(key_hash, None)
            return None
        return found

    def put(self, key_hash: str, found: VerifiedKey, seconds: float) -> None:
        if seconds <= 0:
            return
        now = self._clock()
        if len(self._trusted) >= MAX_ENTRIES:
            self._trusted = {h: e for h, e in self._trusted.items() if e[0] > now}
            if len(self._trusted) >= MAX_ENTRIES:
                self._trusted.clear()
        self._trusted[key_hash] = (now + seconds, found)

    def forget(self, key_hash: str) -> None:
        """A key revoked here: refused from the next request on."""
        self._trusted.pop(key_hash, None)

    def forget_tenant(self, tenant_id: uuid.UUID) -> None:
        """A tenant deleted here: none of its keys is trusted from the next request on."""
        self._trusted = {h: e for h, e in self._trusted.items() if e[1].tenant_id != tenant_id}


# One per process: every app of the process (tests start several) shares what revoking forgets.
keys = KeyCache()
