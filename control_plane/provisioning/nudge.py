"""Telling the workflow that something it waits for has happened, so it looks now."""

from __future__ import annotations

import uuid

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.base import utcnow
from control_plane.servers.models import Server

WAITING_ON_AGENT = ("enrolling",)


async def nudge_workflow(session: AsyncSession, server_id: uuid.UUID) -> None:
    """Make a server waiting on its agent due now (rather than at its next poll)."""
    await session.execute(
        update(Server)
        .where(Server.id == server_id, Server.state.in_(WAITING_ON_AGENT))
        .values(next_step_at=utcnow())
        .execution_options(synchronize_session=False)
    )
