"""Budgets: one monthly amount per workspace, or per tenant (``workspace_id`` NULL).

At most one budget per workspace and one per tenant: two amounts for the same cost would
alert twice for one overspend. The rule is checked here (a NULL workspace cannot be held
unique by a plain index on PostgreSQL), so two creates racing could both pass; the budget
check job reads every budget, so a duplicate would alert twice, never silently.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.costs import report
from control_plane.costs.budget_schemas import BudgetCreate, BudgetStatusOut, BudgetUpdate
from control_plane.costs.models import Budget, BudgetAlert
from control_plane.db.lookup import get_by_id
from control_plane.db.pagination import Page, paginate
from control_plane.db.writes import flush_unique
from control_plane.errors import Conflict, NotFound
from control_plane.tenants.service import get_tenant
from control_plane.workspaces.models import Workspace

BASES = ("actual", "forecast")


def month_start(moment: datetime | date) -> date:
    return date(moment.year, moment.month, 1)


def month_key(month: date) -> str:
    return f"{month:%Y-%m}"


def thresholds_of(budget: Budget) -> list[int]:
    return [int(t) for t in budget.thresholds.split(",") if t]


async def _taken(
    session: AsyncSession, tenant_id: uuid.UUID, workspace_id: uuid.UUID | None
) -> None:
    where = (
        Budget.workspace_id.is_(None)
        if workspace_id is None
        else (Budget.workspace_id == workspace_id)
    )
    if await session.scalar(select(Budget.id).where(Budget.tenant_id == tenant_id, where)):
        owner = "the tenant" if workspace_id is None else f"workspace {workspace_id}"
        raise Conflict(f"{owner} already has a budget", field="body.workspace_id")


async def create_budget(session: AsyncSession, tenant_id: uuid.UUID, data: BudgetCreate) -> Budget:
    await get_tenant(session, tenant_id, field="body.tenant_id")
    if data.workspace_id is not None:
        workspace = await session.get(Workspace, data.workspace_id)
        if workspace is None or workspace.tenant_id != tenant_id:
            raise NotFound("workspace", data.workspace_id, field="body.workspace_id")
    await _taken(session, tenant_id, data.workspace_id)
    budget = Budget(
        tenant_id=tenant_id,
        workspace_id=data.workspace_id,
        name=data.name,
        amount=data.amount,
        currency=data.currency,
        thresholds=",".join(str(t) for t in data.thresholds),
    )
    session.add(budget)
    await flush_unique(session, "body.workspace_id", "a budget was made for it meanwhile")
    await session.refresh(budget)
    return budget


async def get_budget(session: AsyncSession, budget_id: uuid.UUID) -> Budget:
    return await get_by_id(session, Budget, budget_id, "budget")


async def list_budgets(
    session: AsyncSession,
    tenant_id: uuid.UUID | None,
    workspace_id: uuid.UUID | None,
    after: uuid.UUID | None,
    limit: int,
) -> Page[Budget]:
    stmt = select(Budget)
    if tenant_id is not None:
        stmt = stmt.where(Budget.tenant_id == tenant_id)
    if workspace_id is not None:
        stmt = stmt.where(Budget.workspace_id == workspace_id)
    return await paginate(session, stmt, Budget.id, after, limit)


async def update_budget(session: AsyncSession, budget_id: uuid.UUID, data: BudgetUpdate) -> Budget:
    """A new amount or thresholds apply from the next check; thresholds already alerted
    this month stay alerted (once a month each)."""
    budget = await get_budget(session, budget_id)
    for field, value in data.model_dump(exclude_unset=True, exclude_none=True).items():
        if field == "thresholds":
            value = ",".join(str(t) for t in value)
        setattr(budget, field, value)
    await session.flush()
    await session.refresh(budget)
    return budget


async def delete_budget(session: AsyncSession, budget_id: uuid.UUID) -> None:
    await session.delete(await get_budget(session, budget_id))
    await session.flush()


@dataclass(frozen=True)
class Standing:
    """A budget this month: ``None`` figures mean unknown (no figures in its currency)."""

    month: date
    actual: Decimal | None
    projected: Decimal | None

    def value(self, basis: str) -> Decimal | None:
        return self.actual if basis == "actual" else self.projected


async def standing(
    session: AsyncSession, budget: Budget, now: datetime, book: report.MonthBook | None = None
) -> Standing:
    """This month's cost and projection in the budget's currency; a month with figures in
    other currencies only (or none yet) is unknown, not zero. ``book``: the tenant's month
    already rated (``report.month_book``), for many budgets at once."""
    month = month_start(now)
    if book is not None and book.covers(budget.tenant_id, budget.workspace_id, month):
        figures = book.of(budget.workspace_id)
    else:
        figures = await report.month_figures(
            session, tenant_id=budget.tenant_id, workspace_id=budget.workspace_id,
            month=month, now=now,
        )  # fmt: skip
    mine = next((f for f in figures if f.currency == budget.currency), None)
    if mine is None:
        return Standing(month, None, None)
    return Standing(month, mine.actual, mine.projected)


def percent(value: Decimal | None, amount: Decimal) -> Decimal | None:
    if value is None:
        return None
    return (value * 100 / amount).quantize(Decimal("0.1"))


def crosses(value: Decimal, amount: Decimal, threshold: int) -> bool:
    """``value`` is at least ``threshold`` percent of ``amount`` (exact: no rounding)."""
    return value * 100 >= amount * threshold


async def fired(session: AsyncSession, budget: Budget, month: date) -> list[str]:
    found = await session.execute(
        select(BudgetAlert.basis, BudgetAlert.threshold)
        .where(BudgetAlert.budget_id == budget.id, BudgetAlert.month == month_key(month))
        .order_by(BudgetAlert.basis, BudgetAlert.threshold)
    )
    return [f"{basis}.{threshold}" for basis, threshold in found.all()]


async def status_of(
    session: AsyncSession, budget: Budget, now: datetime, book: report.MonthBook | None = None
) -> BudgetStatusOut:
    """``crossed`` when actual or forecast reached the whole amount; ``unknown`` without
    figures in the budget's currency."""
    found = await standing(session, budget, now, book)
    values = [v for v in (found.actual, found.projected) if v is not None]
    if not values:
        state = "unknown"
    else:
        state = "crossed" if any(crosses(v, budget.amount, 100) for v in values) else "under"
    return BudgetStatusOut(
        budget_id=budget.id,
        month=found.month,
        currency=budget.currency,
        amount=budget.amount,
        actual=found.actual,
        projected=found.projected,
        actual_percent=percent(found.actual, budget.amount),
        projected_percent=percent(found.projected, budget.amount),
        state=state,
        crossed=await fired(session, budget, found.month),
    )
