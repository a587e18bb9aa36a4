"""Backup storage into the ledger: the repository sizes the agent reports.

The agent measures each repository after a snapshot and after a prune (``restic stats
--mode raw-data``: the bytes its storage holds, after deduplication and compression) and
reports them as ``repository_size`` and ``offsite_size``; an older agent reports neither,
and then there is simply no reading. Storage is priced by where the repository lives, its
*kind*: restic's URL scheme.
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
MEASURED = ("backup.run", "backup.forget")  # the commands whose results carry the sizes


def repository_kind(url: str) -> str:
    """The storage ``url`` lives on, as prices name it: ``s3``, ``sftp``… or ``local`` for
    a path on the server (``/srv/restic``)."""
    scheme, colon, _ = url.partition(":")
    scheme = scheme.lower()
    return scheme if colon and scheme in KINDS else LOCAL


def sizes_by_kind(policy: BackupPolicy, result: dict[str, Any]) -> dict[str, int]:
    """Bytes held per repository kind: the primary's and the offsite copy's (two
    repositories of one kind add up). A kind with a repository left unmeasured (an older
    agent, restic could not tell) is left out: its last reading stands."""
    held: dict[str, int] = {}
    unknown: set[str] = set()
    measured = [(policy.repository_url, result.get("repository_size"))]
    if policy.offsite_url:
        measured.append((policy.offsite_url, result.get("offsite_size")))
    for url, size in measured:
        kind = repository_kind(url)
        if isinstance(size, int) and not isinstance(size, bool) and size >= 0:
            held[kind] = held.get(kind, 0) + size
        else:
            unknown.add(kind)
    return {kind: size for kind, size in held.items() if kind not in unknown}


async def record_backup(
    session: AsyncSession,
    server: Server,
    policy: BackupPolicy,
    result: dict[str, Any],
    finished_at: datetime,
) -> int:
    """The day's ``backup_storage`` readings from a successful ``backup.run`` or pruning
    ``backup.forget`` (a later one the same day replaces them: the size is the
    repository's, not the run's); how many changed."""
    changed = 0
    for kind, size in sizes_by_kind(policy, result).items():
        day = finished_at.date()
        changed += await meter.record_reading(session, server, "backup_storage", kind, day, size)
    return changed
