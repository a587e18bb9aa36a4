"""Whether a database is at the newest migration, checked without Alembic.

Each admin command checks this before it runs; importing Alembic (and the Mako and Pygments
it pulls in) and loading every migration module cost a CLI process about 0.3 s of CPU. The
fast answer is given only when it is certain: the one row of ``alembic_version`` names the
one revision no migration file revises. Anything else (a branch, several rows, no table, an
older revision) is decided by Alembic itself in ``control_plane.db.migrate``.
"""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from control_plane.db.engine import Database
from control_plane.errors import Conflict

VERSIONS_DIR = Path(__file__).resolve().parent.parent / "migrations" / "versions"
_ASSIGNED = re.compile(r'^(revision|down_revision)\b[^=\n]*= *"([^"\n]+)"', re.M)


def newest_file_revision() -> str | None:
    """The revision no migration file names as its ``down_revision``, when exactly one is."""
    revisions: set[str] = set()
    revised: set[str] = set()
    for path in VERSIONS_DIR.glob("*.py"):
        for name, value in _ASSIGNED.findall(path.read_text()):
            (revisions if name == "revision" else revised).add(value)
    heads = revisions - revised
    return heads.pop() if len(heads) == 1 else None


def _recorded(sync: Connection) -> list[str]:
    if not inspect(sync).has_table("alembic_version"):
        return []
    return [row[0] for row in sync.execute(text("SELECT version_num FROM alembic_version"))]


async def require_current(db: Database) -> None:
    """Raise Conflict unless the schema is at the head revision."""
    async with db.engine.connect() as conn:
        recorded = await conn.run_sync(_recorded)
    newest = newest_file_revision()
    if newest is not None and recorded == [newest]:
        return
    from control_plane.db import migrate

    current, head = await migrate.current_revision(db), migrate.head_revision()
    if current != head:
        raise Conflict(
            f"database schema is at {current or 'empty'}, expected {head}: "
            "run 'mailfleet db upgrade'"
        )
