"""SQLite runs one replica: ``serve`` holds an exclusive lock beside the database file.

Replicas share work through PostgreSQL (LISTEN/NOTIFY, ``FOR UPDATE SKIP LOCKED`` leases);
SQLite has neither, so a second ``serve`` on the same file would race the first one's
dispatcher and jobs. The lock is ``flock`` on ``<file>.serve-lock``: the kernel drops it when
the holder exits, however it exits (kill -9 included), so no stale record can refuse a start.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from control_plane.settings import Settings, SettingsError


class AnotherReplica(SettingsError):
    """Another ``serve`` already runs on this SQLite file."""


def lock_path(database: Path) -> Path:
    return database.with_name(database.name + ".serve-lock")


@contextlib.contextmanager
def only_replica(settings: Settings) -> Iterator[None]:
    """Hold the SQLite file's serve lock while the body runs; nothing on PostgreSQL.
    Raises ``AnotherReplica`` (one line, naming the holder's pid) when it is held."""
    database = settings.sqlite_file
    if database is None:
        yield
        return
    database.parent.mkdir(parents=True, exist_ok=True)
    path = lock_path(database)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise AnotherReplica(
                f"another 'mailfleet serve' (pid {holder}) runs on the SQLite database "
                f"{database}; SQLite runs as the only replica (use PostgreSQL, "
                "MAILFLEET_DATABASE_URL=postgresql://…, for several)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
