"""Budget thresholds alert once each through incidents: actual and forecast separately,
re-runs fire nothing, the next month resolves them; both databases, fixed clocks."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from control_plane.costs import report
from control_plane.costs.budget_checks import check_budgets
from control_plane.costs.models import Budget
from control_plane.db.engine import Database
from control_plane.incidents.models import Incident
from control_plane.workspaces.models import Workspace
from tests.control_plane.costs.ledger import a_priced_server
from tests.support import rows

START = datetime(2026, 11, 1, tzinfo=UTC)


async def a_costing_workspace(db: Database) -> tuple[uuid.UUID, uuid.UUID]:
    """A workspace with one server at 720.00 a month (1.00 an hour) all November."""
    tenant_id = await rows.a_tenant(db, "budget")
    async with db.session() as session:
        workspace = Workspace(tenant_id=tenant_id, name="client")
        session.add(workspace)
        await session.flush()
        await a_priced_server(session, tenant_id, workspace.id, START)
        return tenant_id, workspace.id


async def figures(
    db: Database, tenant_id: uuid.UUID, ws: uuid.UUID, now: datetime
) -> report.MonthFigures:
    async with db.session() as session:
        found = await report.month_figures(
            session,
            tenant_id=tenant_id,
            workspace_id=ws,
            month=date(now.year, now.month, 1),
            now=now,
        )
    (usd,) = [f for f in found if f.currency == "USD"]
    return usd


async def budget_incidents(db: Database, ws: uuid.UUID) -> dict[str, Incident]:
    async with db.session() as session:
        found = await session.scalars(
            select(Incident).where(
                Incident.subject_kind == "workspace",
                Incident.subject_id == str(ws),
                Incident.check.like("budget.%"),
            )
        )
        return {f"{i.check}:{i.opened_at:%m}": i for i in found.all()}


async def test_thresholds_fire_once_each_and_the_next_month_resolves(db: Database) -> None:
    tenant_id, ws = await a_costing_workspace(db)
    t1, t2 = datetime(2026, 11, 10, tzinfo=UTC), datetime(2026, 11, 12, 12, tzinfo=UTC)
    first = await figures(db, tenant_id, ws, t1)
    amount = (first.actual / Decimal("0.85")).quantize(Decimal("0.01"))  # actual at 85 %
    second = await figures(db, tenant_id, ws, t2)
    assert amount <= second.actual < amount * Decimal("1.2"), (amount, second)
    async with db.session() as session:
        session.add(
            Budget(tenant_id=tenant_id, workspace_id=ws, amount=amount, currency="USD",
                   thresholds="80,100,120")
        )  # fmt: skip
    forecast = {t for t in (80, 100, 120) if first.projected * 100 >= amount * t}

    async with db.session() as session:
        await check_budgets(session, t1)
    opened = await budget_incidents(db, ws)
    assert {k for k in opened if k.startswith("budget.actual")} == {"budget.actual.80:11"}
    assert {k for k in opened if k.startswith("budget.forecast")} == {
        f"budget.forecast.{t}:11" for t in forecast
    }
    eighty = opened["budget.actual.80:11"]
    assert eighty.severity == "warning" and eighty.state == "open"
    assert f"{first.actual:.2f} USD" in eighty.summary and f"{amount:.2f} USD" in eighty.summary

    async with db.session() as session:  # the same moment again: nothing new
        assert await check_budgets(session, t1) == 0
    async with db.session() as session:
        await check_budgets(session, t2)
    opened = await budget_incidents(db, ws)
    actual = {k for k in opened if k.startswith("budget.actual")}
    assert actual == {"budget.actual.80:11", "budget.actual.100:11"}
    assert opened["budget.actual.100:11"].severity == "critical"
    async with db.session() as session:
        assert await check_budgets(session, t2) == 0

    december = datetime(2026, 12, 1, 0, 30, tzinfo=UTC)
    async with db.session() as session:
        await check_budgets(session, december)
    after = await budget_incidents(db, ws)
    november = {k: i for k, i in after.items() if k.endswith(":11")}
    assert november and all(i.state == "resolved" for i in november.values())


async def test_the_database_keeps_one_budget_per_workspace_and_per_tenant(db: Database) -> None:
    """Two requests checked at the same instant both see no budget: the unique indexes
    refuse the second row (the API turns that into a 409)."""
    tenant_id, ws = await a_costing_workspace(db)
    for workspace_id in (ws, None):
        async with db.session() as session:
            session.add(Budget(tenant_id=tenant_id, workspace_id=workspace_id,
                               amount=Decimal("1.00"), currency="USD"))  # fmt: skip
        with pytest.raises(IntegrityError):
            async with db.session() as session:
                session.add(Budget(tenant_id=tenant_id, workspace_id=workspace_id,
                                   amount=Decimal("2.00"), currency="USD"))  # fmt: skip
    other_tenant, other_ws = await a_costing_workspace(db)
    async with db.session() as session:  # other owners are not affected
        session.add(Budget(tenant_id=other_tenant, workspace_id=other_ws,
                           amount=Decimal("1.00"), currency="USD"))  # fmt: skip
        session.add(Budget(tenant_id=other_tenant, amount=Decimal("1.00"), currency="USD"))
