"""Files holding the control plane's state are its owner's only from the first byte."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from control_plane.db import migrate
from control_plane.db.engine import Database
from control_plane.files import write_private
from control_plane.tenants.models import Tenant


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_the_sqlite_database_and_its_wal_are_created_0600(tmp_path: Path) -> None:
    previous = os.umask(0o022)  # the usual umask: files come out 0644 unless made otherwise
    try:
        path = tmp_path / "home" / "mailfleet.db"
        database = Database(f"sqlite+aiosqlite:///{path}")
        try:
            await migrate.upgrade(database)
            async with database.session() as session:  # an open write: -wal and -shm exist
                session.add(Tenant(name="private"))
                await session.flush()
                found = {p.name: mode(p) for p in path.parent.iterdir()}
        finally:
            await database.dispose()
    finally:
        os.umask(previous)
    assert {f"{path.name}-wal", f"{path.name}-shm"} <= set(found)
    assert found == dict.fromkeys(found, 0o600)
    assert mode(path.parent) == 0o700


def test_a_private_write_replaces_a_leftover_wider_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "db.restoring"
    leftover = tmp_path / "db.restoring.tmp"
    leftover.write_text("old")
    leftover.chmod(0o644)
    write_private(target, b"secret")
    assert target.read_bytes() == b"secret" and mode(target) == 0o600
    assert not leftover.exists()
