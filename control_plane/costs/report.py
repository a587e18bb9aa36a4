"""Cost reports: rated lines summed by workspace, server, resource or day, rounded to cents
per group; month to date and the projection to month end (run rate plus known changes)."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.costs.allocation import cents, round_parts
from control_plane.costs.engine import MICRO, day_start, month_start, next_month
from control_plane.costs.lines import CostLine
from control_plane.costs.markup import billed
from control_plane.costs.projection import project
from control_plane.costs.rating import load, rate_loaded
from control_plane.errors import InvalidInput
from control_plane.workspaces.models import Workspace

GROUP_BY = ("workspace", "server", "resource", "day")
MAX_RANGE = timedelta(days=366)
IDLE_KEY = "idle"
ZERO = Decimal(0)


@dataclass(frozen=True)
class MonthFigures:
    """One currency's figures for a month: cost so far and projected to its end (cents)."""

    month: date  # its first day
    currency: str
    actual: Decimal
    projected: Decimal


@dataclass(frozen=True)
class Total:
    """One currency's sum (cents); ``unpriced``: some of it had no price (counted as 0)."""

    currency: str
    cost: Decimal
    billed: Decimal
    unpriced: bool


@dataclass(frozen=True)
class Group:
    key: str  # a workspace id ('idle': unallocated), server id, resource or ISO day
    name: str
    currency: str
    cost: Decimal
    billed: Decimal
    unpriced: bool


@dataclass(frozen=True)
class CostReport:
    start: datetime
    end: datetime  # rated up to here (the range's end, or now)
    group_by: str
    tenant_id: uuid.UUID | None
    workspace_id: uuid.UUID | None
    totals: list[Total]
    groups: list[Group]
    idle: list[Total]
    month: date  # the month the figures below are of (the range's last)
    month_to_date: list[MonthFigures]


@dataclass
class _Sum:
    cost: Decimal = ZERO
    billed: Decimal = ZERO
    unpriced: bool = False


def check_range(start: datetime, end: datetime, group_by: str) -> None:
    """422s naming the query field: an empty or reversed range, one over a year, a
    grouping that does not exist."""
    if group_by not in GROUP_BY:
        raise InvalidInput(f"group_by must be one of {', '.join(GROUP_BY)}", field="query.group_by")
    if start >= end:
        raise InvalidInput("from must be before to", field="query.to")
    if end - start > MAX_RANGE:
        raise InvalidInput("a report covers at most 366 days", field="query.from")


def month_fraction(lo: datetime, hi: datetime) -> Decimal:
    """How many months [lo, hi) is, month by month (the fixed markup's share)."""
    fraction = ZERO
    month = month_start(lo.date())
    while day_start(month) < hi:
        a, b = day_start(month), day_start(next_month(month))
        inside = min(hi, b) - max(lo, a)
        if inside > timedelta(0):
            fraction += Decimal(inside // MICRO) / Decimal((b - a) // MICRO)
        month = next_month(month)
    return fraction


async def report_and_book(
    session: AsyncSession,
    start: datetime,
    end: datetime,
    now: datetime,
    tenant_id: uuid.UUID | None,
    workspace_id: uuid.UUID | None,
    group_by: str = "workspace",
    *,
    server_ids: Collection[uuid.UUID] | None = None,
) -> tuple[CostReport, MonthBook | None]:
    """What [start, end) cost up to ``now``, grouped; with the month to date and its
    projection for the range's last month. ``server_ids``: those servers' costs only.
    With every workspace in it (no workspace or servers picked), also that month's book."""
    check_range(start, end, group_by)
    hi = max(start, min(end, now))
    month = month_start((hi - MICRO).date() if hi > start else start.date())
    month_end = day_start(next_month(month))
    loaded = await load(
        session, min(start.date(), month), hi, month_end,
        tenant_id=tenant_id, workspace_id=workspace_id, server_ids=server_ids,
    )  # fmt: skip
    by_day = group_by == "day"  # otherwise a workspace's own server is rated per month
    lines = rate_loaded(loaded, start, hi, workspace_id, by_day=by_day)
    month_lines = (
        lines
        if start == day_start(month)
        else rate_loaded(loaded, day_start(month), hi, workspace_id, by_day=False)
    )
    future = project(loaded, hi, month_end, workspace_id, by_day=False) if hi < month_end else []
    markups = await _markups(session, {line.workspace_id for line in lines})
    fraction = month_fraction(start, hi)
    by_workspace = _billed_by_workspace(lines, markups, fraction)
    groups = _groups(lines, group_by, markups, by_workspace)
    totals = _totals(by_workspace)
    idle = _totals({k: v for k, v in by_workspace.items() if k[0] is None})
    report = CostReport(
        start=start,
        end=hi,
        group_by=group_by,
        tenant_id=tenant_id,
        workspace_id=workspace_id,
        totals=totals,
        groups=groups,
        idle=idle,
        month=month,
        month_to_date=_figures(month, month_lines, future),
    )
    whole = workspace_id is None and server_ids is None
    return report, _book(tenant_id, month, month_lines, future) if whole else None


async def cost_report(
    session: AsyncSession,
    start: datetime,
    end: datetime,
    now: datetime,
    tenant_id: uuid.UUID | None,
    workspace_id: uuid.UUID | None,
    group_by: str = "workspace",
    *,
    server_ids: Collection[uuid.UUID] | None = None,
) -> CostReport:
    """``report_and_book``'s report (``GET /api/v1/costs``)."""
    report, _ = await report_and_book(
        session, start, end, now, tenant_id, workspace_id, group_by, server_ids=server_ids
    )
    return report


async def month_figures(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    workspace_id: uuid.UUID | None,
    month: date,
    now: datetime,
) -> list[MonthFigures]:
    """The tenant's (or one workspace's) month-to-date cost and month-end projection, one
    entry per currency (budgets compare theirs)."""
    first = month_start(month)
    start, end = day_start(first), day_start(next_month(first))
    if now <= start:
        return []
    report = await cost_report(session, start, end, now, tenant_id, workspace_id, "resource")
    return report.month_to_date


@dataclass(frozen=True)
class MonthBook:
    """A tenant's month rated once: each workspace's figures (None: unallocated) and the
    tenant's own, so a page of workspaces or budgets costs one report, not one each."""

    tenant_id: uuid.UUID | None  # None: every tenant's (an admin's view)
    month: date
    by_workspace: dict[uuid.UUID | None, list[MonthFigures]]
    tenant: list[MonthFigures]

    def covers(self, tenant_id: uuid.UUID, workspace_id: uuid.UUID | None, month: date) -> bool:
        """Whether ``of`` answers for this tenant's workspace (or whole tenant) and month."""
        same_month = self.month == month_start(month)
        return same_month and (workspace_id is not None or self.tenant_id == tenant_id)

    def of(self, workspace_id: uuid.UUID | None) -> list[MonthFigures]:
        """What ``month_figures`` gives for this workspace (None: the whole tenant)."""
        return self.tenant if workspace_id is None else self.by_workspace.get(workspace_id, [])


async def month_book(
    session: AsyncSession, *, tenant_id: uuid.UUID | None, month: date, now: datetime
) -> MonthBook:
    """Every workspace's month-to-date cost and projection from one load of the ledger."""
    first = month_start(month)
    start, end = day_start(first), day_start(next_month(first))
    if now <= start:
        return MonthBook(tenant_id, first, {}, [])
    hi = min(end, now)
    loaded = await load(session, first, hi, end, tenant_id=tenant_id, workspace_id=None)
    actual = rate_loaded(loaded, start, hi, None, by_day=False)
    future = project(loaded, hi, end, None, by_day=False) if hi < end else []
    return _book(tenant_id, first, actual, future)


def _book(
    tenant_id: uuid.UUID | None, first: date, actual: list[CostLine], future: list[CostLine]
) -> MonthBook:
    actual_by: dict[uuid.UUID | None, list[CostLine]] = defaultdict(list)
    future_by: dict[uuid.UUID | None, list[CostLine]] = defaultdict(list)
    for line in actual:
        actual_by[line.workspace_id].append(line)
    for line in future:
        future_by[line.workspace_id].append(line)
    workspaces = set(actual_by) | set(future_by)
    return MonthBook(
        tenant_id,
        first,
        {w: _figures(first, actual_by[w], future_by[w]) for w in workspaces},
        _figures(first, actual, future),
    )


def _figures(month: date, actual: list[CostLine], future: list[CostLine]) -> list[MonthFigures]:
    so_far: dict[str, Decimal] = defaultdict(Decimal)
    ahead: dict[str, Decimal] = defaultdict(Decimal)
    for line in actual:
        so_far[line.currency] += line.amount
    for line in future:
        ahead[line.currency] += line.amount
    return [
        MonthFigures(
            month, currency, cents(so_far[currency]), cents(so_far[currency] + ahead[currency])
        )
        for currency in sorted(set(so_far) | set(ahead))
        if currency
    ]


Markup = tuple[str, Decimal | None, Decimal | None]  # name, percent, fixed


async def _markups(
    session: AsyncSession, ids: Iterable[uuid.UUID | None]
) -> dict[uuid.UUID | None, Markup]:
    wanted = [i for i in ids if i is not None]
    found: dict[uuid.UUID | None, Markup] = {None: ("idle / unallocated", None, None)}
    if wanted:
        rows = await session.execute(
            select(
                Workspace.id, Workspace.name, Workspace.markup_percent, Workspace.markup_fixed
            ).where(Workspace.id.in_(wanted))
        )
        found.update({row.id: (row.name, row.markup_percent, row.markup_fixed) for row in rows})
    return found


def _billed_by_workspace(
    lines: list[CostLine], markups: dict[uuid.UUID | None, Markup], fraction: Decimal
) -> ByWorkspace:
    """Per (workspace, currency): cost, billed (idle: nothing billed), any unpriced."""
    sums: dict[tuple[uuid.UUID | None, str], _Sum] = defaultdict(_Sum)
    for line in lines:
        s = sums[(line.workspace_id, line.currency)]
        s.cost += line.amount
        s.unpriced |= not line.priced
    out = {}
    for (workspace, currency), s in sums.items():
        _, percent, fixed = markups.get(workspace, ("", None, None))
        amount = ZERO if workspace is None else billed(s.cost, percent, fixed, fraction)
        out[(workspace, currency)] = (s.cost, amount, s.unpriced)
    return out


def _rounded(sums: dict[tuple[str, str], _Sum]) -> dict[tuple[str, str], tuple[Decimal, Decimal]]:
    """Each (key, currency) to cents, adding up per currency to the rounded total."""
    out: dict[tuple[str, str], tuple[Decimal, Decimal]] = {}
    for currency in {c for _, c in sums}:
        keys = [k for k in sums if k[1] == currency]
        cost = round_parts({k: sums[k].cost for k in keys})
        bill = round_parts({k: sums[k].billed for k in keys})
        out.update({k: (cost[k], bill[k]) for k in keys})
    return out


ByWorkspace = dict[tuple[uuid.UUID | None, str], tuple[Decimal, Decimal, bool]]


def _totals(by_workspace: ByWorkspace) -> list[Total]:
    per: dict[str, _Sum] = defaultdict(_Sum)
    for (_, currency), (cost, bill, unpriced) in by_workspace.items():
        s = per[currency]
        s.cost += cost
        s.billed += bill
        s.unpriced |= unpriced
    return [
        Total(currency, cents(s.cost), cents(s.billed), s.unpriced)
        for currency, s in sorted(per.items())
    ]


def _groups(
    lines: list[CostLine],
    group_by: str,
    markups: dict[uuid.UUID | None, Markup],
    by_workspace: ByWorkspace,
) -> list[Group]:
    sums: dict[tuple[str, str], _Sum] = defaultdict(_Sum)
    names: dict[str, str] = {}
    if group_by == "workspace":
        for (workspace, currency), (cost, bill, unpriced) in by_workspace.items():
            key = IDLE_KEY if workspace is None else str(workspace)
            names[key] = markups.get(workspace, ("(deleted workspace)", None, None))[0]
            sums[(key, currency)] = _Sum(cost, bill, unpriced)
    else:
        rates = {ws: (m[1] or ZERO) for ws, m in markups.items() if ws is not None}
        for line in lines:
            key, name = _key(line, group_by)
            names[key] = name
            s = sums[(key, line.currency)]
            s.cost += line.amount
            if line.workspace_id is not None:  # the percent applies line by line
                s.billed += line.amount * (1 + rates.get(line.workspace_id, ZERO) / 100)
            s.unpriced |= not line.priced
    rounded = _rounded(sums)
    groups = [
        Group(key, names[key], currency, *rounded[(key, currency)], sums[(key, currency)].unpriced)
        for key, currency in sums
    ]
    groups.sort(
        key=lambda g: (g.key == IDLE_KEY, g.name if group_by != "day" else g.key, g.key, g.currency)
    )
    return groups


def _key(line: CostLine, group_by: str) -> tuple[str, str]:
    if group_by == "server":
        return str(line.server_id), line.server_name
    if group_by == "resource":
        return line.resource, line.resource
    return line.day.isoformat(), line.day.isoformat()
