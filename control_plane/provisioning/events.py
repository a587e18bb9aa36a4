"""Recording and reading a server's event history (the workflow's audit trail)."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.base import utcnow
from control_plane.db.pagination import Page, paginate
from control_plane.provisioning.models import ServerEvent
from control_plane.servers.models import Server

MAX_MESSAGE = 2000


def record(session: AsyncSession, server: Server, kind: str, message: str) -> ServerEvent:
    event = ServerEvent(
        tenant_id=server.tenant_id,
        server_id=server.id,
        at=utcnow(),
        state=server.state,
        kind=kind,
        message=message[:MAX_MESSAGE],
    )
    session.add(event)
    return event


async def last_message(session: AsyncSession, server_id: uuid.UUID) -> str | None:
    return await session.scalar(
        select(ServerEvent.message)
        .where(ServerEvent.server_id == server_id)
        .order_by(ServerEvent.id.desc())
        .limit(1)
    )


async def list_events(
    session: AsyncSession, server_id: uuid.UUID, after: uuid.UUID | None, limit: int
) -> Page[ServerEvent]:
    stmt = select(ServerEvent).where(ServerEvent.server_id == server_id)
    return await paginate(session, stmt, ServerEvent.id, after, limit)
