"""The ``mail-stats`` periodic job: ask each ready server's agent for its mail counts every
``MAILFLEET_MAIL_STATS_INTERVAL_SECONDS``.

A server is asked once per interval slot (the command's idempotency key names the slot, so
the test is one index lookup however long the command history), and only when its last
``mail.stats`` settled: one at a time, so an agent offline for a day gets one command when it
returns, not hundreds. Each asks from yesterday on: the day that just ended gets its final
figures after midnight. At most ``MAILFLEET_MAIL_STATS_BATCH`` per round, so a large fleet's
requests spread over several rounds.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

from sqlalchemy import and_, exists, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.commands import service as commands
from control_plane.commands.models import LIVE_STATES, Command
from control_plane.db.base import utcnow
from control_plane.mailstats.results import KIND
from control_plane.servers.models import Server
from control_plane.settings import Settings

PENDING = ("queued", *sorted(LIVE_STATES))


def slot_key(epoch: float, interval: float) -> str:
    return f"{KIND}:{int(epoch // interval)}"


def job(settings: Settings) -> Callable[[AsyncSession], Awaitable[int]]:
    async def queue_due(session: AsyncSession) -> int:
        now = utcnow()
        key = slot_key(now.timestamp(), settings.mail_stats_interval_seconds)
        busy_or_recent = exists().where(
            Command.server_id == Server.id,
            or_(
                and_(Command.state.in_(PENDING), Command.kind == KIND),
                Command.idempotency_key == key,
            ),
        )
        due = (
            await session.scalars(
                select(Server)
                .where(
                    Server.state == "ready",
                    Server.agent_state == "enrolled",
                    Server.revoked_at.is_(None),
                    ~busy_or_recent,
                )
                .order_by(Server.id)
                .limit(settings.mail_stats_batch)
                .with_for_update(skip_locked=True, of=Server)
            )
        ).all()
        since = (now.date() - timedelta(days=1)).isoformat()
        for server in due:
            await commands.queue_system_command(
                session,
                server,
                KIND,
                {"since": since},
                settings.mail_stats_timeout_seconds,
                idempotency_key=key,
            )
        return len(due)

    return queue_due
