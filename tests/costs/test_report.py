"""Rating and reports over a month played out: exact cents per workspace, idle, projection,
a price change mid-month, a corrected reading re-rating its day only; both databases."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from uuid import UUID

from control_plane.costs import meter
from control_plane.costs.allocation import round_parts
from control_plane.costs.lines import CostLine
from control_plane.costs.rating import rate
from control_plane.costs.report import (
    cost_report,
    month_book,
    month_figures,
    report_and_book,
)
from control_plane.db.engine import Database
from tests.costs.scenario import (
    EXPECTED,
    GB,
    IDLE,
    NOV,
    NOW,
    PROJECTED,
    PROJECTED_BY,
    TOTAL,
    at,
    play_month,
)


async def test_month_per_workspace_idle_and_projection(db: Database) -> None:
    month = await play_month(db)
    names = {str(month.a): "A", str(month.b): "B", str(month.c): "C", "idle": "idle"}
    async with db.tenant_session(month.tenant_id) as session:
        report = await cost_report(session, NOV, NOW, NOW, None, None, "workspace")
    costs = {names[g.key]: g.cost for g in report.groups}
    assert costs == {**EXPECTED, "idle": IDLE}
    unpriced = {names[g.key] for g in report.groups if g.unpriced}
    assert unpriced == {"B"}  # S5's plan has no price: said, not silently free
    (total,) = report.totals
    assert (total.currency, total.cost, total.unpriced) == ("USD", TOTAL, True)
    assert [i.cost for i in report.idle] == [IDLE]
    billed = {names[g.key]: g.billed for g in report.groups}
    # A: 10 % on 41.40; B: 9.00 a month × 20/30; C: none; idle: billed to no one.
    assert billed == {
        "A": Decimal("45.54"),
        "B": Decimal("18.30"),
        "C": Decimal("44.60"),
        "idle": 0,
    }
    assert total.billed == Decimal("108.44")
    (figures,) = report.month_to_date
    assert (figures.month, figures.actual, figures.projected) == (
        date(2026, 11, 1),
        TOTAL,
        PROJECTED,
    )
    async with db.tenant_session(month.tenant_id) as session:
        for name, workspace in (("A", month.a), ("B", month.b), ("C", month.c)):
            (mine,) = await month_figures(
                session, tenant_id=month.tenant_id, workspace_id=workspace,
                month=date(2026, 11, 1), now=NOW,
            )  # fmt: skip
            assert (mine.actual, mine.projected) == (EXPECTED[name], PROJECTED_BY[name])
        only_a = await cost_report(session, NOV, NOW, NOW, None, month.a, "server")
    assert sum(g.cost for g in only_a.groups) == EXPECTED["A"] and only_a.idle == []


async def test_price_change_and_corrected_reading(db: Database) -> None:
    month = await play_month(db)
    async with db.tenant_session(month.tenant_id) as session:
        lines = await rate(session, date(2026, 11, 1), date(2026, 12, 1), now=NOW)
        by_day = await cost_report(session, NOV, NOW, NOW, None, None, "day")
    s4 = {
        line.day: line.amount
        for line in lines
        if line.server_name.startswith("s4") and line.resource == "server"
    }
    assert s4[date(2026, 11, 15)] == Decimal(1) and s4[date(2026, 11, 16)] == Decimal("1.2")
    assert max(s4) == date(2026, 11, 20)  # nothing rated past now
    assert all(line.amount >= 0 for line in lines)
    async with db.session() as session:  # day 5's backup size corrected: 5 GB → 10 GB
        await meter.record_reading(
            session, month.s1, "backup_storage", "s3", date(2026, 11, 5), 10 * GB
        )
    async with db.tenant_session(month.tenant_id) as session:
        again = await cost_report(session, NOV, NOW, NOW, None, None, "day")
    before = {g.key: g.cost for g in by_day.groups}
    after = {g.key: g.cost for g in again.groups}
    assert {k for k in after if after[k] != before[k]} == {"2026-11-05"}
    assert after["2026-11-05"] - before["2026-11-05"] == Decimal("0.05")
    assert again.totals[0].cost == TOTAL + Decimal("0.05")


async def test_report_window_and_ledger_after_deletion(db: Database) -> None:
    """A range inside the month rates only its hours; the deleted S2 still costs B."""
    month = await play_month(db)
    async with db.tenant_session(month.tenant_id) as session:
        report = await cost_report(session, at(5), at(9), NOW, None, month.b, "server")
    s2 = [g for g in report.groups if g.name.startswith("s2")]
    assert [g.cost for g in s2] == [Decimal("3.00")]
    # B's S3 share of the 5th–8th: ¼ of 60.00 × 96 h / 720 h
    assert report.totals[0].cost == Decimal("3.00") + Decimal("2.00")


async def test_reports_not_by_day_match_the_daily_lines(db: Database) -> None:
    """Grouped by server or resource, a report rates a workspace's server per month and
    pools a shared server's days before splitting: the cents are the daily lines' own;
    a report of some servers gives each the cents it has in the whole report."""
    month = await play_month(db)
    async with db.tenant_session(month.tenant_id) as session:
        lines = await rate(session, date(2026, 11, 1), date(2026, 12, 1), now=NOW)
        reports = {
            group_by: await cost_report(session, NOV, NOW, NOW, None, None, group_by)
            for group_by in ("server", "resource")
        }
        whole = {g.key: g.cost for g in reports["server"].groups}
        picked = sorted(whole)[:2]  # a page of servers: their ledger alone
        page = await cost_report(
            session, NOV, NOW, NOW, None, None, "server", server_ids=[UUID(k) for k in picked]
        )
    keys: dict[str, Callable[[CostLine], str]] = {
        "server": lambda line: str(line.server_id),
        "resource": lambda line: line.resource,
    }
    for group_by, key in keys.items():
        sums: dict[str, Decimal] = defaultdict(Decimal)
        for line in lines:
            sums[key(line)] += line.amount
        assert {g.key: g.cost for g in reports[group_by].groups} == round_parts(sums)
    assert {g.key: g.cost for g in page.groups} == {k: whole[k] for k in picked}


def test_rounded_parts_add_up() -> None:
    parts = {"a": Decimal("1") / 3, "b": Decimal("1") / 3, "c": Decimal("1") / 3}
    rounded = round_parts(parts)
    assert sum(rounded.values()) == Decimal("1.00")
    assert sorted(rounded.values()) == [Decimal("0.33"), Decimal("0.33"), Decimal("0.34")]


async def test_the_month_book_gives_each_workspace_its_own_figures(db: Database) -> None:
    """One rating of the month gives every workspace (and the tenant) the figures a
    report of that workspace alone gives."""
    month = await play_month(db)
    async with db.tenant_session(month.tenant_id) as session:
        book = await month_book(
            session, tenant_id=month.tenant_id, month=date(2026, 11, 1), now=NOW
        )
        for workspace in (month.a, month.b, month.c, None):
            alone = await month_figures(
                session, tenant_id=month.tenant_id, workspace_id=workspace,
                month=date(2026, 11, 1), now=NOW,
            )  # fmt: skip
            assert book.of(workspace) == alone, workspace
        _, with_report = await report_and_book(session, NOV, NOW, NOW, month.tenant_id, None)
        _, picked = await report_and_book(session, NOV, NOW, NOW, None, month.a)
    assert [f.actual for f in book.tenant] == [TOTAL]
    assert with_report == book and picked is None  # one workspace's report has no book
