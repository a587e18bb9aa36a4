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
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import ColumnElement, func, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.costs.allocation import SPLIT_READING, add_shares
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
from control_plane.db.tenancy import current_tenant
from control_plane.tenants.models import Tenant

RESOURCES = ("server", "ip", "backup_storage", "bandwidth")
__all__ = ["RESOURCES", "CostLine", "Loaded", "load", "rate"]

# Core columns (no ORM row processing: a month is ~70 rows a server). Core statements
# skip the tenant session's automatic filter, so ``load`` names the tenant itself.
_S = MeterSpan.__table__.c
_R = MeterReading.__table__.c
_SPAN_COLUMNS = (
    _S.tenant_id, _S.server_id, _S.server_name, _S.workspace_id, _S.provider, _S.resource,
    _S.item, _S.started_at, _S.ended_at,
)  # fmt: skip
# What changes day by day; the server's tenant, name and provider come from its spans
# (or, for a server no span covers, one row per server): fewer values to convert per row.
_READING_COLUMNS = (_R.server_id, _R.workspace_id, _R.resource, _R.item, _R.day, _R.quantity)
_META_COLUMNS = (
    MeterReading.server_id, MeterReading.tenant_id, MeterReading.server_name,
    MeterReading.provider,
)  # fmt: skip


@dataclass
class Loaded:
    """The ledger of the months a range touches, up to ``hi``, with the prices and the
    tenants' ways of splitting: what rating (and the projection) work from."""

    ledger: Ledger
    prices: Prices
    cost_split: dict[uuid.UUID, str]

    def rater(self, *, by_day: bool = True) -> Rater:
        return Rater(self.ledger, self.prices, self.cost_split, by_day=by_day)


async def load(
    session: AsyncSession,
    first: date,
    hi: datetime,
    prices_to: datetime,
    *,
    tenant_id: uuid.UUID | None,
    workspace_id: uuid.UUID | None,
    server_ids: Collection[uuid.UUID] | None = None,
) -> Loaded:
    """Spans held and readings taken from the start of ``first``'s month to ``hi``, and
    the prices of [that month, ``prices_to``): three queries and the tenants' splits.
    ``server_ids`` reads those servers' ledger only (a page of the console's fleet)."""
    lo = day_start(month_start(first))
    last_day = (hi - MICRO).date()
    spans = select(*_SPAN_COLUMNS).where(
        _S.started_at < hi, or_(_S.ended_at.is_(None), _S.ended_at > lo)
    )
    readings: list[ColumnElement[bool]] = [_R.day >= lo.date(), _R.day <= last_day]
    tenants = select(Tenant.id, Tenant.cost_split)
    for tenant in {tenant_id, current_tenant(session.sync_session)} - {None}:
        spans = spans.where(_S.tenant_id == tenant)
        readings.append(_R.tenant_id == tenant)
        tenants = tenants.where(Tenant.id == tenant)
    if workspace_id is not None:  # its own, and shared servers' (split below)
        spans = spans.where(or_(_S.workspace_id == workspace_id, _S.workspace_id.is_(None)))
        readings.append(or_(_R.workspace_id == workspace_id, _R.workspace_id.is_(None)))
    if server_ids is not None:
        spans = spans.where(_S.server_id.in_(server_ids))
        readings.append(_R.server_id.in_(server_ids))
    ledger = Ledger(spans=[Span(*row) for row in await session.execute(spans)])
    meta = {s.server_id: (s.tenant_id, s.server_name, s.provider) for s in ledger.spans}
    rows = await _reading_runs(session, readings)
    missing = {s for s in {row[0] for row in rows} if s not in meta}
    if missing:
        found = await session.execute(
            select(*_META_COLUMNS).distinct().where(MeterReading.server_id.in_(missing))
        )
        meta.update(
            {row.server_id: (row.tenant_id, row.server_name, row.provider) for row in found}
        )
    for server_id, workspace, resource, item, days, quantities in rows:
        if resource in SPLIT_READING:
            add_shares(ledger.shares, server_id, resource, item, days, quantities)
            continue
        tenant, name, provider = meta[server_id]
        ledger.readings.extend(
            Reading(tenant, server_id, name, workspace, provider, resource, item, day, quantity)
            for day, quantity in zip(days, quantities, strict=True)
        )
    book = await price_book(session, lo, max(prices_to, hi))
    splits = {row.id: row.cost_split for row in await session.execute(tenants)}
    return Loaded(ledger, Prices(book), splits)


# server, workspace, resource, item, the days and each day's quantity
ReadingRun = tuple[uuid.UUID, uuid.UUID | None, str, str, list[date], list[int]]


async def _reading_runs(
    session: AsyncSession, where: list[ColumnElement[bool]]
) -> list[ReadingRun]:
    """The readings ``where`` holds, by server, workspace, resource and item, in no
    particular day order. PostgreSQL sends each run's days and quantities as two arrays
    (one aggregation feeds both the same rows in the same order): a month is ~70 rows a
    server, and converting rows, not values, is what a large tenant's report spent its
    time on. The work memory lets it hash the groups rather than sort 70k rows on disk."""
    if session.get_bind().dialect.name != "postgresql":
        found = await session.execute(select(*_READING_COLUMNS).where(*where))
        return [(s, w, r, i, [day], [q]) for s, w, r, i, day, q in found]
    await session.execute(text("SET LOCAL work_mem = '64MB'"))
    keys = (_R.server_id, _R.workspace_id, _R.resource, _R.item)
    runs = (
        select(*keys, func.array_agg(_R.day), func.array_agg(_R.quantity))
        .where(*where)
        .group_by(*keys)
    )
    return [tuple(row) for row in await session.execute(runs)]


def rate_loaded(
    loaded: Loaded,
    lo: datetime,
    hi: datetime,
    workspace_id: uuid.UUID | None,
    *,
    by_day: bool = True,
) -> list[CostLine]:
    """The lines of [lo, hi) from what ``load`` read (``by_day``: see ``Rater``)."""
    if lo >= hi:
        return []
    rater = loaded.rater(by_day=by_day)
    rater.spans(lo, hi)
    rater.storage(lo, hi)
    rater.bandwidth(lo.date(), (hi - MICRO).date())
    lines = rater.result()
    if workspace_id is None:
        return lines
    return [line for line in lines if line.workspace_id == workspace_id]


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
