"""The ``ip-warmup`` periodic job: plans that ran their course are marked done, and every
server's limits are pushed once per UTC day (a new day resets the agent's counters and
moves each warming address to its next cap).

"Pushed today" is read from the commands themselves: a ``network.limits.set`` payload starts
with its day (``{"day":"2026-11-30",…`` — the payload is stored as compact, sorted JSON),
so no bookkeeping column can disagree with what was actually queued.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.commands.models import Command
from control_plane.db.base import utcnow
from control_plane.ips import operations, service
from control_plane.ips.models import IpAddress
from control_plane.servers.models import Server

BATCH = 200  # plans finished and servers pushed per round; the rest wait for the next


def day_prefix(now: datetime) -> str:
    return '{"day":"' + now.date().isoformat() + '"'


async def finish_plans(session: AsyncSession, now: datetime) -> int:
    rows = await session.scalars(
        select(IpAddress)
        .where(
            IpAddress.released_at.is_(None),
            IpAddress.warmup_plan.is_not(None),
            IpAddress.warmup_done_at.is_(None),
            IpAddress.warmup_start < now.date(),
        )
        .order_by(IpAddress.id)
        .limit(BATCH)
        .with_for_update(skip_locked=True)
    )
    done = 0
    for ip in rows:
        done += await operations.finish_if_done(session, ip, now)
    return done


async def push_new_day(session: AsyncSession, now: datetime) -> int:
    """Push the limits of servers with live addresses and an enrolled agent that have no
    ``network.limits.set`` for today yet."""
    pushed_today = exists().where(
        Command.server_id == Server.id,
        Command.kind == service.LIMITS_KIND,
        Command.payload.startswith(day_prefix(now), autoescape=True),
    )
    has_ips = exists().where(IpAddress.server_id == Server.id, IpAddress.released_at.is_(None))
    servers = await session.scalars(
        select(Server)
        .where(
            Server.state == "ready",
            Server.agent_state == "enrolled",
            Server.revoked_at.is_(None),
            has_ips,
            ~pushed_today,
        )
        .order_by(Server.id)
        .limit(BATCH)
        .with_for_update(skip_locked=True)
    )
    count = 0
    for server in servers:
        await service.push_limits(session, server, now)
        count += 1
    return count


async def warmup_job(session: AsyncSession) -> int:
    now = utcnow()
    return await finish_plans(session, now) + await push_new_day(session, now)
