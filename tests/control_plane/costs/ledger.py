"""Writing a priced server into the metering ledger, and reading the ledger back, in tests."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.costs.models import MeterReading, MeterSpan
from control_plane.costs.prices import set_price
from control_plane.db.engine import Database


async def a_priced_server(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    workspace_id: uuid.UUID,
    started_at: datetime,
    ended_at: datetime | None = None,
) -> None:
    """A manual server of ``workspace_id`` on a plan of its own at 720.00 a month (1.00 an
    hour in a 30-day month), held from ``started_at`` (to ``ended_at``)."""
    plan = f"plan-{uuid.uuid4().hex[:12]}"
    await set_price(
        session,
        provider="manual",
        kind="plan",
        item=plan,
        amount=Decimal("720.00"),
        currency="USD",
        effective_from=datetime(2026, 1, 1, tzinfo=UTC),
        source="admin",
    )
    session.add(
        MeterSpan(
            tenant_id=tenant_id,
            server_id=uuid.uuid4(),
            server_name="mx1",
            workspace_id=workspace_id,
            provider="manual",
            resource="server",
            item=plan,
            started_at=started_at,
            ended_at=ended_at,
        )
    )


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
