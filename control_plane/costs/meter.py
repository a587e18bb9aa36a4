"""The metering ledger's writes: spans of server-hours and IP-hours, daily readings.

Called in the same transaction as the change they record (an order, a resize, a
deprovision, an address assigned or released, a backup's size), so the ledger never
disagrees with what happened. Spans and readings name the server by id and name and are
never deleted with it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.costs.models import MeterReading, MeterSpan
from control_plane.db.base import new_id, utcnow
from control_plane.db.writes import upsert
from control_plane.servers.models import Server

SPAN_RESOURCES = ("server", "ip")
READING_RESOURCES = (
    "backup_storage",
    "bandwidth",
    "share_domains",
    "share_mailboxes",
    "share_storage",
)


async def open_span(
    session: AsyncSession, server: Server, resource: str, item: str, at: datetime
) -> MeterSpan:
    """Start holding ``item`` (a plan or an address) for ``server`` from ``at``; a span of
    the same item already open is kept (idempotent)."""
    open_ = await session.scalar(
        select(MeterSpan).where(
            MeterSpan.server_id == server.id,
            MeterSpan.resource == resource,
            MeterSpan.item == item,
            MeterSpan.ended_at.is_(None),
        )
    )
    if open_ is not None:
        return open_
    span = MeterSpan(
        tenant_id=server.tenant_id,
        server_id=server.id,
        server_name=server.name,
        workspace_id=server.workspace_id,
        provider=server.provider,
        resource=resource,
        item=item,
        started_at=at,
    )
    session.add(span)
    await session.flush()
    return span


async def close_spans(
    session: AsyncSession,
    server_id: uuid.UUID,
    resource: str,
    at: datetime,
    item: str | None = None,
) -> int:
    """End the server's open spans of ``resource`` (of ``item`` only, if given) at ``at``;
    how many were open."""
    where = [
        MeterSpan.server_id == server_id,
        MeterSpan.resource == resource,
        MeterSpan.ended_at.is_(None),
    ]
    if item is not None:
        where.append(MeterSpan.item == item)
    result = await session.execute(
        update(MeterSpan)
        .where(*where)
        .values(ended_at=at)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def change_plan(session: AsyncSession, server: Server, plan: str, at: datetime) -> None:
    """The server moved to ``plan`` at ``at`` (a confirmed resize): one span ends, the next
    starts at the same instant. Idempotent: a step run again after a crash finds ``plan``'s
    span open and changes nothing."""
    await session.execute(
        update(MeterSpan)
        .where(
            MeterSpan.server_id == server.id,
            MeterSpan.resource == "server",
            MeterSpan.ended_at.is_(None),
            MeterSpan.item != plan,
        )
        .values(ended_at=at)
        .execution_options(synchronize_session=False)
    )
    await open_span(session, server, "server", plan, at)


async def close_server(session: AsyncSession, server_id: uuid.UUID, at: datetime) -> int:
    """The server's instance is gone (terminated, or its row deleted): every span of it —
    its plan and its addresses — ends at ``at``; how many were open."""
    return sum([await close_spans(session, server_id, resource, at) for resource in SPAN_RESOURCES])


def metered(server: Server) -> bool:
    """Whether the server is billed by the hour: it was ordered on a provider's plan. A
    manual server (no plan) is its owner's machine, and so are its addresses."""
    return server.plan is not None


async def record_reading(
    session: AsyncSession,
    server: Server,
    resource: str,
    item: str,
    day: date,
    quantity: int,
) -> bool:
    """The day's ``quantity`` of ``resource`` for ``server`` (replacing an earlier reading of
    the same day: a late or corrected fact); whether it changed anything (the same figure
    again leaves the row, ``recorded_at`` included, as it was)."""
    if resource not in READING_RESOURCES:
        raise ValueError(f"unknown reading {resource!r}")
    known = await session.scalar(
        select(MeterReading.quantity).where(
            MeterReading.server_id == server.id,
            MeterReading.resource == resource,
            MeterReading.item == item,
            MeterReading.day == day,
        )
    )
    if known == quantity:
        return False  # nothing new: the day need not be rated again
    await record_readings(session, [(server, resource, item, day, quantity)])
    return True


Reading = tuple[Server, str, str, date, int]  # server, resource, item, day, quantity
BATCH = 500  # readings per statement (11 parameters each: well within SQLite's limit)


async def record_readings(session: AsyncSession, readings: Sequence[Reading]) -> int:
    """Write ``readings`` (distinct keys) as they are, a batch per statement: for a caller
    that has already left out what is recorded unchanged (the metering job, which reads a
    day's readings at once); how many."""
    unknown = {reading[1] for reading in readings} - set(READING_RESOURCES)
    if unknown:
        raise ValueError(f"unknown reading {sorted(unknown)[0]!r}")
    now = utcnow()
    rows = [
        {
            "id": new_id(),
            "tenant_id": server.tenant_id,
            "server_id": server.id,
            "server_name": server.name,
            "workspace_id": server.workspace_id,
            "provider": server.provider,
            "resource": resource,
            "item": item,
            "day": day,
            "quantity": quantity,
            "recorded_at": now,
        }
        for server, resource, item, day, quantity in readings
    ]
    for first in range(0, len(rows), BATCH):
        await upsert(
            session,
            MeterReading,
            rows[first : first + BATCH],
            keys=("server_id", "resource", "item", "day"),
            update=("quantity", "recorded_at", "server_name", "workspace_id"),
        )
    return len(rows)
