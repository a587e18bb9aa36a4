"""What the CLI tests of health, incidents and alerts share: the CLI's environment on the
test database, servers made straight in it (and removed after), the one-line error."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import delete

from control_plane.db.base import utcnow
from control_plane.db.engine import Database
from control_plane.servers.models import Server

MakeServer = Callable[..., Coroutine[Any, Any, uuid.UUID]]


@pytest.fixture
def env(database_url: str, db: Database, tmp_path: Path) -> dict[str, str]:
    return {"MAILFLEET_DATABASE_URL": database_url, "MAILFLEET_HOME": str(tmp_path / "home")}


@pytest_asyncio.fixture
async def make_server(db: Database) -> AsyncIterator[MakeServer]:
    """Servers straight in the database, deleted after the test (with their health rows)
    so no other test's sweep finds them."""
    made: list[uuid.UUID] = []

    async def make(tenant_id: str, name: str, state: str = "ready") -> uuid.UUID:
        async with db.session() as session:
            server = Server(
                tenant_id=uuid.UUID(tenant_id),
                name=name,
                provider="manual",
                state=state,
                mail_stack="none",
                agent_state="enrolled",
                last_heartbeat_at=utcnow(),
            )
            session.add(server)
            await session.flush()
            made.append(server.id)
            return server.id

    yield make
    async with db.session() as session:
        await session.execute(delete(Server).where(Server.id.in_(made)))


def one_line_error(result: Any, code: int, message: str) -> None:
    assert result.returncode == code, result
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
