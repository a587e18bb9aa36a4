"""The ``budget-checks`` periodic job: each budget's month-to-date cost and projection
against its thresholds, alerted through incidents once per threshold, basis and month.

Once: a ``budget_alerts`` row is inserted before the signal is sent, and only the
transaction whose insert took (``ON CONFLICT DO NOTHING … RETURNING``) sends it, so two
replicas checking at the same moment alert once. The incident (check
``budget.<actual|forecast>.<threshold>``, subject the workspace, or the tenant for a
tenant budget) stays open for the rest of the month; the first check of the next month
resolves it (a new month's cost starts again from nothing). A budget whose figures are
unknown (none in its currency) alerts nothing and is never taken as under budget.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.costs.budgets import (
    BASES,
    Standing,
    crosses,
    month_key,
    month_start,
    percent,
    standing,
    thresholds_of,
)
from control_plane.costs.models import Budget, BudgetAlert
from control_plane.db.base import new_id, utcnow
from control_plane.db.writes import insert_for
from control_plane.incidents.models import OPEN_STATES, Incident
from control_plane.incidents.service import observe
from control_plane.incidents.signals import Signal, SubjectKind
from control_plane.settings import Settings

log = logging.getLogger(__name__)
CHECK_PREFIX = "budget."


class BudgetJob:
    """A ``periodic.Job`` run: every budget once per ``budget_check_interval_seconds``
    (this process's previous round is kept in memory: no table for it; a replica
    starting up checks at its first round)."""

    def __init__(self, settings: Settings, clock: Callable[[], datetime] = utcnow) -> None:
        self.settings, self.clock = settings, clock
        self.last: datetime | None = None

    async def __call__(self, session: AsyncSession) -> int:
        now = self.clock()
        interval = timedelta(seconds=self.settings.budget_check_interval_seconds)
        if self.last is not None and now - self.last < interval:
            return 0
        self.last = now
        return await check_budgets(session, now)


async def check_budgets(session: AsyncSession, now: datetime) -> int:
    """Resolve last month's budget incidents, then alert every newly crossed threshold;
    how many signals were sent."""
    sent = await _close_past_months(session, now)
    budgets = (await session.scalars(select(Budget).order_by(Budget.id))).all()
    for budget in budgets:
        try:  # one budget's failure (rolled back alone) must not stop the others
            async with session.begin_nested():
                sent += await check_budget(session, budget, now)
        except Exception:
            log.exception("budget check of budget %s failed", budget.id)
    return sent


async def check_budget(session: AsyncSession, budget: Budget, now: datetime) -> int:
    found = await standing(session, budget, now)
    signals = []
    for basis in BASES:
        value = found.value(basis)
        if value is None:
            continue  # unknown: nothing is alerted, nothing is taken as under budget
        for threshold in thresholds_of(budget):
            if crosses(value, budget.amount, threshold) and await _first(
                session, budget, found, basis, threshold, value, now
            ):
                signals.append(_signal(budget, basis, threshold, value))
    if found.actual is None:
        log.info("budget %s: no %s figures this month (unknown)", budget.id, budget.currency)
    await observe(session, signals, now)
    return len(signals)


async def _first(
    session: AsyncSession,
    budget: Budget,
    found: Standing,
    basis: str,
    threshold: int,
    value: Decimal,
    now: datetime,
) -> bool:
    """Record the crossing; True only for the transaction whose row was the one stored."""
    statement = insert_for(session, BudgetAlert).values(
        id=new_id(),
        tenant_id=budget.tenant_id,
        budget_id=budget.id,
        month=month_key(found.month),
        basis=basis,
        threshold=threshold,
        amount=value,
        fired_at=now,
    )
    inserted = await session.scalar(
        statement.on_conflict_do_nothing(
            index_elements=["budget_id", "month", "basis", "threshold"]
        ).returning(BudgetAlert.id)
    )
    return inserted is not None


def _signal(budget: Budget, basis: str, threshold: int, value: Decimal) -> Signal:
    what = "cost this month" if basis == "actual" else "projected cost for this month"
    owner: SubjectKind = "tenant" if budget.workspace_id is None else "workspace"
    share = percent(value, budget.amount)
    return Signal(
        tenant_id=budget.tenant_id,
        subject_kind=owner,
        subject_id=str(budget.workspace_id or budget.tenant_id),
        check=f"{CHECK_PREFIX}{basis}.{threshold}",
        state="failing",
        severity="warning" if threshold < 100 else "critical",
        summary=f"{what} {value:.2f} {budget.currency} is {share}% of the {owner}'s budget "
        f"{budget.amount:.2f} {budget.currency} (alerts at {threshold}%)",
        workspace_id=budget.workspace_id,
    )


async def _close_past_months(session: AsyncSession, now: datetime) -> int:
    """Budget incidents opened before this month began resolve: their month is over."""
    start = month_start(now)
    began = datetime(start.year, start.month, 1, tzinfo=UTC)
    past = (
        await session.scalars(
            select(Incident).where(
                Incident.check.like(f"{CHECK_PREFIX}%"),
                Incident.subject_kind.in_(("workspace", "tenant")),
                Incident.state.in_(OPEN_STATES),
                Incident.opened_at < began,
            )
        )
    ).all()
    await observe(
        session,
        [
            Signal(
                tenant_id=i.tenant_id,
                subject_kind="tenant" if i.subject_kind == "tenant" else "workspace",
                subject_id=i.subject_id,
                check=i.check,
                state="ok",
                severity="info",
                summary=f"a new month ({month_key(start)}) began",
                workspace_id=i.workspace_id,
            )
            for i in past
        ],
        now,
    )
    return len(past)
