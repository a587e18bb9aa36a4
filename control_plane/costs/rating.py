"""Rating: the ledger × the price catalog → unrounded daily cost lines, each allocated to a
workspace (or to none: idle/unallocated). Everything else (reports, projections, budgets,
statements, reconciliation) reads these lines, so there is one rule for what anything cost.

Rules (see the issue 17 closing note): a server span costs its plan's monthly price × the
hours held ÷ the hours of that calendar month, split at price changes; IP-hours beyond one
address per server-hour at the IP price the same way; backup storage the day's bytes as
GB × the GB-month price ÷ the days of the month; bandwidth the GB sent beyond the plan's
monthly allowance, on the day the month's total crosses it. A server owned by a workspace
costs that workspace; a shared one (no workspace) is split by the day's share readings
per the tenant's ``cost_split``; no weights: idle.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.costs.allocation import SPLIT_READING, add_share
from control_plane.costs.engine import (
    MICRO,
    Ledger,
    Prices,
    Rater,
    Reading,
    Span,
    day_start,
    month_start,
)
from control_plane.costs.lines import CostLine
from control_plane.costs.models import MeterReading, MeterSpan
from control_plane.costs.prices import price_book
from control_plane.tenants.models import Tenant

RESOURCES = ("server", "ip", "backup_storage", "bandwidth")
__all__ = ["RESOURCES", "CostLine", "Loaded", "load", "rate"]

_SPAN_COLUMNS = (
    MeterSpan.tenant_id, MeterSpan.server_id, MeterSpan.server_name, MeterSpan.workspace_id,
    MeterSpan.provider, MeterSpan.resource, MeterSpan.item, MeterSpan.started_at,
    MeterSpan.ended_at,
)  # fmt: skip
_READING_COLUMNS = (
    MeterReading.tenant_id, MeterReading.server_id, MeterReading.server_name,
    MeterReading.workspace_id, MeterReading.provider, MeterReading.resource, MeterReading.item,
    MeterReading.day, MeterReading.quantity,
)  # fmt: skip


@dataclass
class Loaded:
    """The ledger of the months a range touches, up to ``hi``, with the prices and the
    tenants' ways of splitting: what rating (and the projection) work from."""

    ledger: Ledger
    prices: Prices
    cost_split: dict[uuid.UUID, str]

    def rater(self) -> Rater:
        return Rater(self.ledger, self.prices, self.cost_split)


async def load(
    session: AsyncSession,
    first: date,
    hi: datetime,
    prices_to: datetime,
    *,
    tenant_id: uuid.UUID | None,
    workspace_id: uuid.UUID | None,
) -> Loaded:
    """Spans held and readings taken from the start of ``first``'s month to ``hi``, and
    the prices of [that month, ``prices_to``): three queries and the tenants' splits."""
    lo = day_start(month_start(first))
    last_day = (hi - MICRO).date()
    spans = select(*_SPAN_COLUMNS).where(
        MeterSpan.started_at < hi, or_(MeterSpan.ended_at.is_(None), MeterSpan.ended_at > lo)
    )
    readings = select(*_READING_COLUMNS).where(
        MeterReading.day >= lo.date(), MeterReading.day <= last_day
    )
    tenants = select(Tenant.id, Tenant.cost_split)
    if tenant_id is not None:
        spans = spans.where(MeterSpan.tenant_id == tenant_id)
        readings = readings.where(MeterReading.tenant_id == tenant_id)
        tenants = tenants.where(Tenant.id == tenant_id)
    if workspace_id is not None:  # its own, and shared servers' (split below)
        spans = spans.where(
            or_(MeterSpan.workspace_id == workspace_id, MeterSpan.workspace_id.is_(None))
        )
        readings = readings.where(
            or_(MeterReading.workspace_id == workspace_id, MeterReading.workspace_id.is_(None))
        )
    ledger = Ledger(spans=[Span(*row) for row in await session.execute(spans)])
    for row in await session.execute(readings):
        if row.resource in SPLIT_READING:
            add_share(ledger.shares, row.server_id, row.day, row.resource, row.item, row.quantity)
        else:
            ledger.readings.append(Reading(*row))
    book = await price_book(session, lo, max(prices_to, hi))
    splits = {row.id: row.cost_split for row in await session.execute(tenants)}
    return Loaded(ledger, Prices(book), splits)


def rate_loaded(
    loaded: Loaded, lo: datetime, hi: datetime, workspace_id: uuid.UUID | None
) -> list[CostLine]:
    """The lines of [lo, hi) from what ``load`` read."""
    if lo >= hi:
        return []
    rater = loaded.rater()
    rater.spans(lo, hi)
    rater.storage(lo, hi)
    rater.bandwidth(lo.date(), (hi - MICRO).date())
    if workspace_id is None:
        return rater.lines
    return [line for line in rater.lines if line.workspace_id == workspace_id]


async def rate(
    session: AsyncSession,
    start: date,
    end: date,
    *,
    now: datetime,
    tenant_id: uuid.UUID | None = None,
    workspace_id: uuid.UUID | None = None,
) -> list[CostLine]:
    """The cost lines of the days [start, end) up to ``now`` (nothing is rated past
    ``now``: today is partial), for one tenant (or all, admin) and one workspace (or
    all, idle included). Tenant-scoped sessions see their own tenant only."""
    lo, hi = day_start(start), min(day_start(end), now)
    if lo >= hi:
        return []
    loaded = await load(session, start, hi, hi, tenant_id=tenant_id, workspace_id=workspace_id)
    return rate_loaded(loaded, lo, hi, workspace_id)
