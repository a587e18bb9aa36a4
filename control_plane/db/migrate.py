"""Alembic, driven from code: ``mailfleet db upgrade`` and ``serve`` both call ``upgrade``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from control_plane.db.engine import Database

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


async def upgrade(db: Database, revision: str = "head") -> None:
    await _migrate(db, lambda config: command.upgrade(config, revision))


async def downgrade(db: Database, revision: str) -> None:
    await _migrate(db, lambda config: command.downgrade(config, revision))


async def _migrate(db: Database, run: Callable[[Config], None]) -> None:
    """Run migrations in one transaction. On SQLite, with foreign keys off meanwhile (as
    Alembic advises for batch mode): a table rebuilt to change its constraints is dropped
    and renamed, and with foreign keys on, dropping it would first delete every row that
    references it. The references are checked before the transaction commits."""
    async with db.engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:  # before the transaction begins: SQLite ignores it inside one
            await conn.run_sync(_foreign_keys, False)
        try:
            await conn.run_sync(lambda sync: run(alembic_config(sync)))
            if sqlite:
                broken = (await conn.exec_driver_sql("PRAGMA foreign_key_check")).first()
                if broken is not None:
                    raise RuntimeError(f"migration left a broken reference in {broken[0]}")
            await conn.commit()
        finally:
            if sqlite:
                await conn.rollback()
                await conn.run_sync(_foreign_keys, True)


def _foreign_keys(sync: Connection, on: bool) -> None:
    """Set SQLite's foreign key enforcement on the driver's connection, outside any
    transaction (SQLAlchemy's own execute would begin one first)."""
    cursor = sync.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")
    finally:
        cursor.close()


async def current_revision(db: Database) -> str | None:
    async with db.engine.connect() as conn:
        return await conn.run_sync(
            lambda sync: MigrationContext.configure(sync).get_current_revision()
        )


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()
