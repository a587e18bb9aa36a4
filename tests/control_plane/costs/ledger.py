"""Reading the metering ledger back in tests."""

from __future__ import annotations

import uuid
from datetime import date

from sqlalchemy import select

from control_plane.costs.models import MeterReading, MeterSpan
from control_plane.db.engine import Database


async def spans_of(
    db: Database, server_id: uuid.UUID | str, resource: str | None = None
) -> list[MeterSpan]:
    """The server's spans (of ``resource``, if given), oldest first."""
    async with db.session() as session:
        stmt = select(MeterSpan).where(MeterSpan.server_id == uuid.UUID(str(server_id)))
        if resource is not None:
            stmt = stmt.where(MeterSpan.resource == resource)
        rows = await session.scalars(stmt.order_by(MeterSpan.started_at, MeterSpan.item))
        return list(rows)


async def readings_of(
    db: Database, server_id: uuid.UUID | str, resource: str | None = None
) -> dict[tuple[str, str, date], int]:
    """(resource, item, day) → quantity of the server's readings."""
    async with db.session() as session:
        stmt = select(MeterReading).where(MeterReading.server_id == uuid.UUID(str(server_id)))
        if resource is not None:
            stmt = stmt.where(MeterReading.resource == resource)
        return {(r.resource, r.item, r.day): r.quantity for r in await session.scalars(stmt)}
