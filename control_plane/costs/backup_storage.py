"""Backup storage into the ledger: the repository sizes a successful ``backup.run`` reports.

The agent measures each repository after the snapshot (``restic stats --mode raw-data``:
the bytes its storage holds, after deduplication and compression) and reports them as
``repository_size`` and ``offsite_size``; an older agent reports neither, and then there is
simply no reading. Storage is priced by where the repository lives, its *kind*: restic's
URL scheme.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.backups.models import BackupPolicy
from control_plane.costs import meter
from control_plane.servers.models import Server

# restic's backends with a URL scheme (``s3:host/bucket``…); anything else is a local path.
KINDS = ("s3", "b2", "gs", "azure", "sftp", "rest", "swift", "rclone")
LOCAL = "local"


def repository_kind(url: str) -> str:
    """The storage ``url`` lives on, as prices name it: ``s3``, ``sftp``… or ``local`` for
    a path on the server (``/srv/restic``)."""
    scheme, colon, _ = url.partition(":")
    scheme = scheme.lower()
    return scheme if colon and scheme in KINDS else LOCAL


def sizes_by_kind(policy: BackupPolicy, result: dict[str, Any]) -> dict[str, int]:
    """Bytes held per repository kind after the run: the primary's, plus the offsite copy's
    when the run copied there (two repositories of one kind add up)."""
    held: dict[str, int] = {}
    measured = [(policy.repository_url, result.get("repository_size"))]
    if policy.offsite_url and result.get("offsite_copied"):
        measured.append((policy.offsite_url, result.get("offsite_size")))
    for url, size in measured:
        if isinstance(size, int) and not isinstance(size, bool) and size >= 0:
            kind = repository_kind(url)
            held[kind] = held.get(kind, 0) + size
    return held


async def record_backup(
    session: AsyncSession,
    server: Server,
    policy: BackupPolicy,
    result: dict[str, Any],
    finished_at: datetime,
) -> int:
    """The day's ``backup_storage`` readings from one successful run's result (a later run
    the same day replaces them: the size is the repository's, not the run's); how many
    changed."""
    changed = 0
    for kind, size in sizes_by_kind(policy, result).items():
        day = finished_at.date()
        changed += await meter.record_reading(session, server, "backup_storage", kind, day, size)
    return changed
