"""What the agent link tells health: a stream dropping makes the server's checks run at once
(and ``agent.link`` read as down), a stream coming up clears that, and a settled
``mailu.status`` becomes the ``mailu.services`` and ``mailu.queue`` results.

Registered with ``commands.handlers`` when imported (the sweep and the routes import it).
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.commands import handlers
from control_plane.commands.models import Command
from control_plane.db.base import utcnow
from control_plane.health import checks, schedule, service
from control_plane.health.models import HealthSchedule
from control_plane.servers.models import Server


async def agent_disconnected(session: AsyncSession, server_id: uuid.UUID) -> None:
    server = await session.get(Server, server_id)
    if server is None or server.state not in schedule.CHECKED_STATES:
        return
    now = utcnow()
    await schedule.due_at(session, server, now, agent_disconnected_at=now)


async def agent_connected(session: AsyncSession, server_id: uuid.UUID) -> None:
    """Back: ``agent.link`` recovers at once (checked now) rather than at the next slot."""
    row = await session.scalar(
        select(HealthSchedule).where(HealthSchedule.server_id == server_id).with_for_update()
    )
    if row is None or row.agent_disconnected_at is None:
        return
    server = await session.get(Server, server_id)
    if server is not None:
        await schedule.due_at(session, server, utcnow(), agent_disconnected_at=None)


async def mailu_status_settled(session: AsyncSession, command: Command) -> None:
    rules = service.current_rules()
    results = checks.mailu_results(command, rules.queue_threshold)
    await service.record_results(session, command.server_id, results, utcnow())


handlers.register_event_handler(handlers.AGENT_DISCONNECTED, agent_disconnected)
handlers.register_event_handler(handlers.AGENT_CONNECTED, agent_connected)
handlers.register_result_handler("mailu.status", mailu_status_settled)
