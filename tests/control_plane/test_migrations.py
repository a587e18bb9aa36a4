"""Migrations run from empty to head, back to base and up again, on both databases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from control_plane.db import migrate
from control_plane.db.engine import Database
from control_plane.db.models import Base
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


async def test_models_match_the_migrated_schema(empty_db: Database) -> None:
    await migrate.upgrade(empty_db)
    async with empty_db.engine.connect() as conn:
        diff = await conn.run_sync(
            lambda sync: compare_metadata(
                MigrationContext.configure(sync, opts={"compare_type": True}), Base.metadata
            )
        )
    assert diff == []


async def test_upgrade_twice_is_a_no_op(empty_db: Database) -> None:
    await migrate.upgrade(empty_db)
    before = await tables(empty_db)
    await migrate.upgrade(empty_db)
    assert await tables(empty_db) == before


def test_ids_are_time_ordered_even_within_one_millisecond() -> None:
    from control_plane.db.base import new_id

    ids = [new_id() for _ in range(50_000)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert {i.version for i in ids} == {7}
