"""The PostgreSQL pool pings a connection only after it sat idle (not at every checkout,
which cost three round trips on asyncpg), and still never hands out a dead one: every
pooled connection killed behind its back (as a PostgreSQL restart does), the next
transactions work."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from control_plane.db.engine import Database

pytestmark = pytest.mark.postgres_only
IDLE_PING_SECONDS = 0.2


async def backend_pids(db: Database, count: int) -> set[int]:
    """``count`` transactions at once: as many pooled connections, and their server pids."""

    async def one() -> int:
        async with db.session() as session:
            pid = int(await session.scalar(text("SELECT pg_backend_pid()")) or 0)
            await asyncio.sleep(0.05)  # hold it, so the others need connections of their own
            return pid

    return set(await asyncio.gather(*(one() for _ in range(count))))


async def test_a_connection_killed_while_idle_in_the_pool_is_never_handed_out(
    database_url: str,
) -> None:
    db = Database(database_url, idle_ping_seconds=IDLE_PING_SECONDS)
    other = Database(database_url)
    try:
        pids = await backend_pids(db, 3)
        assert len(pids) == 3
        async with other.session() as session:
            killed = await session.scalar(
                text("SELECT count(pg_terminate_backend(pid)) FROM unnest(CAST(:p AS int[])) pid"),
                {"p": sorted(pids)},
            )
        assert killed == 3
        await asyncio.sleep(IDLE_PING_SECONDS)
        fresh = await backend_pids(db, 3)
        assert len(fresh) == 3 and not fresh & pids
    finally:
        await db.dispose()
        await other.dispose()
