"""Migrations run from empty to head, back to base and up again, on both databases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import pytest_asyncio
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from control_plane.backups.models import BackupPolicy
from control_plane.db import migrate, schema_version
from control_plane.db.base import UTCDateTime
from control_plane.db.engine import Database
from control_plane.db.models import Base
from control_plane.errors import Conflict
from control_plane.metrics import partitions
from control_plane.servers.models import Server
from control_plane.tenants.models import Tenant
from tests.conftest import BACKENDS, fresh_database_url
from tests.support.postgres import drop_database


@pytest_asyncio.fixture(params=BACKENDS)
async def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    url = await fresh_database_url(request.param, tmp_path)
    database = Database(url)
    yield database
    await database.dispose()
    if request.param == "postgresql":
        await drop_database(url)


async def tables(db: Database) -> set[str]:
    async with db.engine.connect() as conn:
        return set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))


async def test_upgrade_downgrade_upgrade(empty_db: Database) -> None:
    assert await migrate.current_revision(empty_db) is None
    await migrate.upgrade(empty_db)
    assert await migrate.current_revision(empty_db) == migrate.head_revision()
    assert {"tenants", "workspaces", "api_keys"} <= await tables(empty_db)

    await migrate.downgrade(empty_db, "base")
    assert await tables(empty_db) <= {"alembic_version"}
    assert await migrate.current_revision(empty_db) is None

    await migrate.upgrade(empty_db)
    assert await migrate.current_revision(empty_db) == migrate.head_revision()


async def test_commands_run_only_at_the_head_revision(empty_db: Database) -> None:
    """The CLI's check reads the migration files, not Alembic: the same head, the same
    refusals (an empty database, an older revision)."""
    head = migrate.head_revision()
    assert schema_version.newest_file_revision() == head
    with pytest.raises(Conflict, match=f"schema is at empty, expected {head}"):
        await schema_version.require_current(empty_db)
    await migrate.upgrade(empty_db)
    await schema_version.require_current(empty_db)
    await migrate.downgrade(empty_db, "-1")
    older = await migrate.current_revision(empty_db)
    with pytest.raises(Conflict, match=f"schema is at {older}, expected {head}"):
        await schema_version.require_current(empty_db)


async def test_models_match_the_migrated_schema(empty_db: Database) -> None:
    await migrate.upgrade(empty_db)
    async with empty_db.engine.connect() as conn:
        diff = await conn.run_sync(
            lambda sync: compare_metadata(
                MigrationContext.configure(
                    sync, opts={"compare_type": True, "include_name": partitions.include_name}
                ),
                Base.metadata,
            )
        )
    assert diff == []


async def test_upgrade_twice_is_a_no_op(empty_db: Database) -> None:
    await migrate.upgrade(empty_db)
    before = await tables(empty_db)
    await migrate.upgrade(empty_db)
    assert await tables(empty_db) == before


async def test_0012_turns_the_could_not_run_prefix_into_a_state(empty_db: Database) -> None:
    """Rows written before 0012 marked a check that could not run by a text prefix; upgrade
    makes it ``unknown`` (any other error ``failed``, a clean run ``ok``), downgrade restores
    the prefix."""
    await migrate.upgrade(empty_db)
    async with empty_db.session() as session:
        tenant = Tenant(name="migrated")
        session.add(tenant)
        await session.flush()
        ids = []
        for name in ("a", "b"):
            server = Server(tenant_id=tenant.id, name=name, provider="manual")
            session.add(server)
            await session.flush()
            session.add(BackupPolicy(tenant_id=tenant.id, server_id=server.id, repository_url="/r"))
            ids.append(server.id)
    await migrate.downgrade(empty_db, "0011")
    old = sa.table(
        "backup_policies",
        sa.column("server_id", sa.Uuid()),
        *[sa.column(name, sa.Text()) for name in ("last_check_error", "last_drill_error")],
        *[sa.column(name, UTCDateTime()) for name in ("last_check_at", "last_drill_at")],
    )
    at = datetime(2026, 11, 1, tzinfo=UTC)
    rows = {
        ids[0]: {"last_check_error": "could not run: restic check: wrong repository password",
                 "last_drill_error": "restore drill of aaaa1111: 1 of 100 files wrong"},
        ids[1]: {"last_check_error": None, "last_drill_error": None},
    }  # fmt: skip
    async with empty_db.engine.begin() as conn:
        for server_id, errors in rows.items():
            values = {**errors, "last_check_at": at, "last_drill_at": None}
            await conn.execute(old.update().where(old.c.server_id == server_id).values(values))

    await migrate.upgrade(empty_db)
    async with empty_db.session() as session:
        policies = {p.server_id: p for p in await session.scalars(sa.select(BackupPolicy))}
    shown = {
        server_id: (p.last_check_state, p.last_check_error, p.last_drill_state, p.last_drill_error)
        for server_id, p in policies.items()
    }
    assert shown == {
        ids[0]: ("unknown", "restic check: wrong repository password",
                 "failed", "restore drill of aaaa1111: 1 of 100 files wrong"),
        ids[1]: ("ok", None, None, None),  # a check ran clean; no drill ever ran
    }  # fmt: skip

    await migrate.downgrade(empty_db, "0011")
    async with empty_db.engine.connect() as conn:
        back = {
            r.server_id: {"last_check_error": r.last_check_error,
                          "last_drill_error": r.last_drill_error}
            for r in await conn.execute(sa.select(old))
        }  # fmt: skip
    assert back == rows


def test_ids_are_time_ordered_even_within_one_millisecond() -> None:
    from control_plane.db.base import new_id

    ids = [new_id() for _ in range(50_000)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert {i.version for i in ids} == {7}
