"""One change to a server at a time: a running IP switch or resize refuses the other.

Both move the server's traffic or restart it, and each one's rollback assumes the server is
as it left it. Each workflow still refuses a second one of its own kind with its own message
(and its partial unique index settles a race between two of them). Between the two kinds
no index can settle it, so the check holds a per-server lock until its transaction ends:
on PostgreSQL a transaction-scoped advisory lock keyed by the server; SQLite's writers
already take turns (BEGIN IMMEDIATE).
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db import locks
from control_plane.errors import Conflict
from control_plane.ipswitch.models import IpSwitch
from control_plane.resize.models import ServerResize
from control_plane.workflows.steps import ACTIVE_STATES

RUNNING = ((IpSwitch, "IP switch"), (ServerResize, "resize"))


async def refuse_while_another_runs(
    session: AsyncSession, server_id: uuid.UUID, own: type[IpSwitch | ServerResize], action: str
) -> None:
    """409 naming the other kind's running workflow on ``server_id`` (``own`` kind aside).
    Call it in the transaction that then records ``own``: the lock lasts until it ends."""
    await locks.hold(session, f"busy:{server_id}")
    for model, label in RUNNING:
        if model is own:
            continue
        running = await session.scalar(
            select(model.id).where(model.server_id == server_id, model.state.in_(ACTIVE_STATES))
        )
        if running is not None:
            raise Conflict(f"{label} {running} is running for this server; {action} after it")
