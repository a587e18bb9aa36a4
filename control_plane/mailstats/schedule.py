"""The ``mail-stats`` periodic job: ask each ready server's agent for its mail counts every
``MAILFLEET_MAIL_STATS_INTERVAL_SECONDS`` — only agents that do not send them on their stream
unasked (capability ``mail_counts``, at the same interval, agreed in the hello): a command per
server and interval was, at 10,000 servers, 33 commands a second and ~2.9 million command
rows a day.

A server is asked once per interval slot, each server's slots offset by its id so a fleet's
requests spread over the interval (the command's idempotency key names the slot, so the
test is one index lookup however long the command history), and only when its last
``mail.stats`` settled: one at a time, so an agent offline for a day gets one command when it
returns, not hundreds. Each asks from yesterday on: the day that just ended gets its final
figures after midnight. At most ``MAILFLEET_MAIL_STATS_BATCH`` per round, so a large fleet's
requests spread over several rounds.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta

from sqlalchemy import ColumnElement, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.commands import service as commands
from control_plane.commands.models import LIVE_STATES, Command
from control_plane.db.base import utcnow
from control_plane.health.schedule import offset_seconds
from control_plane.mailstats.results import KIND, REPORT_KIND
from control_plane.servers.models import Server
from control_plane.settings import Settings

PENDING = ("queued", *sorted(LIVE_STATES))


# Servers whose asked-already keys are looked up per query (bounds the IN lists).
_LOOKUP_CHUNK = 1000


def slot_key(server_id: uuid.UUID, epoch: float, interval: float) -> str:
    """The server's current slot: each server has its own place in the interval (from its
    id, as the health sweep's), so a fleet's requests arrive evenly instead of every server
    falling due together when a shared slot turns."""
    return f"{KIND}:{int((epoch - offset_seconds(server_id, interval)) // interval)}"


def _askable() -> tuple[ColumnElement[bool], ...]:
    """Ready, enrolled, not revoked, its agent does not send reports of its own (capability
    ``mail_counts``: asking it too would only count twice), and its last ``mail.stats``
    settled."""
    pending = exists().where(
        Command.server_id == Server.id, Command.kind == KIND, Command.state.in_(PENDING)
    )
    return (
        Server.state == "ready",
        Server.agent_state == "enrolled",
        Server.revoked_at.is_(None),
        ~Server.capabilities.contains(REPORT_KIND, autoescape=True),
        ~pending,
    )


async def _not_asked_this_slot(
    session: AsyncSession, keys: dict[uuid.UUID, str], limit: int
) -> list[uuid.UUID]:
    """Up to ``limit`` of the servers (in order) with no command under their slot's key."""
    due: list[uuid.UUID] = []
    ids = list(keys)
    for start in range(0, len(ids), _LOOKUP_CHUNK):
        chunk = ids[start : start + _LOOKUP_CHUNK]
        rows = await session.execute(
            select(Command.server_id, Command.idempotency_key).where(
                Command.server_id.in_(chunk), Command.idempotency_key.in_({keys[i] for i in chunk})
            )
        )
        asked = {(server_id, key) for server_id, key in rows}
        due += [i for i in chunk if (i, keys[i]) not in asked]
        if len(due) >= limit:
            break
    return due[:limit]


def job(settings: Settings) -> Callable[[AsyncSession], Awaitable[int]]:
    async def queue_due(session: AsyncSession) -> int:
        now = utcnow()
        interval = settings.mail_stats_interval_seconds
        candidates = (
            await session.scalars(select(Server.id).where(*_askable()).order_by(Server.id))
        ).all()
        keys = {i: slot_key(i, now.timestamp(), interval) for i in candidates}
        due_ids = await _not_asked_this_slot(session, keys, settings.mail_stats_batch)
        if not due_ids:
            return 0
        # Locked and checked again: another replica may have asked meanwhile (and the
        # command's idempotency key makes a second ask of the same slot return the first).
        due = (
            await session.scalars(
                select(Server)
                .where(Server.id.in_(due_ids), *_askable())
                .order_by(Server.id)
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
                idempotency_key=keys[server.id],
            )
        return len(due)

    return queue_due
