"""The usage and costs pages in a real browser (Debian's Chromium), against the session's
control plane on PostgreSQL: the usage dashboard's trend charts from real agent samples
and their range picker, a server's history with its capacity forecast lines and the CSV
export, costs per workspace from a priced ledger, budgets made and changed (bad amounts
refused naming the field), tenancy and CSRF. Each page is checked with axe-core and
screenshotted."""

from __future__ import annotations

import csv
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from control_plane.capacity.schemas import AnomalyOut, CapacityOut, ForecastOut
from control_plane.costs.budget_schemas import BudgetCreate
from control_plane.costs.budgets import create_budget
from control_plane.usage import export
from control_plane.usage.series import Series
from control_plane.usage.service import Usage
from control_plane.web.pages.usage import history_chart
from tests.web.console import ConsoleServer
from tests.web.helpers import serious_violations, sign_in, snap
from tests.web.usage_costs_setup import days_of_samples, month_of, priced_server, workspace

pytestmark = pytest.mark.postgres_only
HISTORY_DAYS = 4.5  # a forecast needs three days with 12+ hours each, the last 24 h among them


async def points(page: Page, chart: str) -> int:
    return int(await page.locator(f"{chart} .chart").get_attribute("data-points") or 0)


async def test_the_usage_dashboard_and_a_servers_history_with_its_forecast_and_export(
    page: Page, console_server: ConsoleServer, screenshots: Path
) -> None:
    tenant_id, key, _ = console_server.tenant("usage")
    busy = console_server.server(tenant_id, "mx-busy")
    console_server.server(tenant_id, "mx-quiet")
    stored = days_of_samples(console_server, tenant_id, busy, HISTORY_DAYS)
    assert stored == HISTORY_DAYS * 24 * 12

    await sign_in(page, key)
    await page.click("nav >> text=Usage")
    await page.wait_for_url("**/ui/usage")
    await expect(page.locator("#totals")).to_contain_text("1 of 2")  # reporting of servers
    await expect(page.locator("#limits")).to_contain_text("mx-busy")
    for chart in ("#trend-cpu", "#trend-memory"):
        await expect(page.locator(f"{chart} .chart canvas")).to_have_count(1)
        assert await points(page, chart) >= 24 * 60 // 5 // 2  # 24 h of 5-minute samples at 1m
        await expect(page.locator(f"{chart} .u-legend")).to_contain_text("mx-busy")
    assert await serious_violations(page) == []
    await snap(page, screenshots, "usage")

    await page.click("#trends nav >> text=90d")  # the range picker swaps the charts (htmx)
    await expect(page.locator("#trends nav [aria-current]")).to_have_text("90d")
    await expect(page.locator("#trend-cpu .chart canvas")).to_have_count(1)
    assert 0 < await points(page, "#trend-cpu") <= 24 * 5  # hourly: ~4.5 days of hours
    assert page.url.endswith("/ui/usage")  # swapped in place

    await page.click("#usage-servers >> text=Usage history of mx-busy")
    await page.wait_for_url(f"**/ui/usage/servers/{busy}")
    await expect(page.locator("#history .chart canvas")).to_have_count(1)
    legend = page.locator("#history .u-legend")
    for line in ("CPU %", "CPU % forecast", "Memory % forecast", "Disk / % forecast"):
        await expect(legend).to_contain_text(line)
    await expect(page.locator("#forecasts")).to_contain_text("forecast.cpu")
    await expect(page.locator("#summaries")).to_contain_text("CPU %")
    assert await serious_violations(page) == []
    await snap(page, screenshots, "usage-server")

    async with page.expect_download() as download_info:
        await page.click("#export")
    download = await download_info.value
    assert download.suggested_filename.startswith(f"usage-{busy}-")
    rows = list(csv.reader((await download.path()).read_text().splitlines()))
    assert tuple(rows[0]) == export.COLUMNS
    per_series = Counter(row[1] for row in rows[1:])
    # 7 days at 5 minutes: each sample its own bucket, every series the API has
    assert per_series["cpu_percent"] == stored and per_series["memory_percent"] == stored
    assert per_series["fs_used_percent:/"] == stored

    await page.click("#history nav >> text=24h")
    await expect(page.locator("#history nav [aria-current]")).to_have_text("24h")
    await expect(page.locator("#history .chart canvas")).to_have_count(1)
    assert page.url.endswith(f"/ui/usage/servers/{busy}")


def test_the_history_chart_draws_forecast_lines_from_the_fitted_value_and_marks_anomalies() -> None:
    """The chart's own series (no browser): a forecast from the fitted value at the end of
    the newest hour, as far ahead as the chart looks back, in its series' colour; the
    anomalies inside the range as marks, those before it left out."""
    now = datetime(2026, 11, 30, 12, 30, tzinfo=UTC)
    hours = [now - timedelta(hours=h) for h in range(24, 0, -1)]
    us = [int(t.timestamp()) * 1_000_000 for t in hours]
    series = {"cpu_percent": Series.of(us, [20.0] * 24, [20.0] * 24, [20.0] * 24, [60] * 24)}
    found = Usage(uuid.uuid4(), now - timedelta(days=1), now, "1h", series)

    def anomaly(at: datetime) -> AnomalyOut:
        return AnomalyOut(resource="cpu", mountpoint=None, at=at, value_percent=90.0,
                          baseline_percent=20.0, allowed=5.0, reason="spike")  # fmt: skip

    cpu = ForecastOut(
        resource="cpu", mountpoint=None, check="forecast.cpu", state="ok", severity=None,
        summary="", current_percent=20.0, peak_percent=21.0, slope_per_day=2.0,
        slope_band=(1.0, 3.0), days_fitted=5, thresholds=[], fitted_percent=21.0,
    )  # fmt: skip
    capacity = CapacityOut(
        server_id=found.server_id, computed_at=now, window_days=30, warning_days=7,
        fitted_on="", baselines={}, forecasts=[cpu], anomalies_total=2,
        anomalies=[anomaly(hours[5]), anomaly(now - timedelta(days=3))],
    )  # fmt: skip
    chart = history_chart(found, capacity, timedelta(days=1))
    assert chart["labels"] == ["CPU %", "CPU % forecast", "CPU % anomaly"]
    assert chart["styles"] == ["line", "forecast", "marks"]
    assert chart["colors"] == [0, 0, 0]
    times, line, forecast, marks = chart["data"]
    origin = datetime(2026, 11, 30, 13, tzinfo=UTC).timestamp()
    ahead = {t: v for t, v in zip(times, forecast, strict=True) if v is not None}
    assert ahead == {origin: 21.0, origin + 86_400: 23.0}
    marked = {t: v for t, v in zip(times, marks, strict=True) if v is not None}
    assert marked == {hours[5].timestamp(): 90.0}
    assert sum(v is not None for v in line) == 24


async def test_costs_per_workspace_budgets_and_a_statement(
    page: Page, console_server: ConsoleServer, screenshots: Path
) -> None:
    tenant_id, key, _ = console_server.tenant("costs")
    client = workspace(console_server, tenant_id, "Client A")
    priced_server(console_server, tenant_id, client)
    (figures,) = month_of(console_server, tenant_id, client)
    assert figures.currency == "USD" and figures.actual > 0

    await sign_in(page, key)
    await page.click("nav >> text=Costs")
    await page.wait_for_url("**/ui/costs")
    row = page.locator("#workspaces tbody tr", has_text="Client A")
    await expect(row).to_contain_text(f"{figures.actual:.2f} USD")  # cost so far
    await expect(row.locator("td").nth(2)).to_contain_text(f"{figures.projected:.2f} USD")
    await expect(page.locator("#budget-list")).to_have_count(0)
    await expect(page.locator("#budgets")).to_contain_text("No budgets yet")

    form = page.locator("#budget-form")
    await form.locator("select[name=workspace_id]").select_option(label="Client A")
    for bad in ("lots", "-5"):
        await form.locator("input[name=amount]").fill(bad)
        async with page.expect_response("**/ui/costs/budgets") as answer:
            await form.locator("button[type=submit]").click()
        assert (await answer.value).status == 422
        await expect(page.locator("#budget-error")).to_contain_text("Amount:")
        await expect(page.locator("#budget-amount")).to_have_attribute("aria-invalid", "true")
        await expect(page.locator("#budget-amount")).to_have_value(bad)  # kept to correct
        await expect(page.locator("#budget-list")).to_have_count(0)  # nothing made
    assert await serious_violations(page) == []
    await page.locator("#budget-amount").fill("500.00")
    await page.locator("#budget-form button[type=submit]").click()
    await page.wait_for_url("**/ui/costs#budgets")
    budget_row = page.locator("#budget-list tbody tr", has_text="Client A")
    await expect(budget_row).to_contain_text("500.00 USD")
    await expect(budget_row).to_contain_text(f"{figures.actual:.2f}")
    await expect(budget_row.locator(".badge")).to_have_text("under")
    assert await serious_violations(page) == []
    await snap(page, screenshots, "costs")

    await budget_row.locator("a").click()  # change it
    budget_path = page.url.removeprefix(console_server.url)
    await page.locator("#budget-amount").fill("0")
    async with page.expect_response("**/ui/costs/budgets/*") as answer:
        await page.locator("#budget-form button[type=submit]").click()
    assert (await answer.value).status == 422
    await expect(page.locator("#budget-error")).to_contain_text("Amount:")
    assert await serious_violations(page) == []
    await snap(page, screenshots, "costs-budget")
    await page.locator("#budget-amount").fill("750")
    await page.locator("#budget-form button[type=submit]").click()
    await page.wait_for_url("**/ui/costs#budgets")
    await expect(budget_row).to_contain_text("750.00 USD")

    await row.locator("text=Statement").click()
    await expect(page.locator("h1")).to_contain_text("Client A")
    await expect(page.locator("#statement")).to_contain_text("mx1")
    assert await serious_violations(page) == []
    await snap(page, screenshots, "costs-statement")

    forms: list[dict[str, str | float | bool]] = [
        {"amount": "9.00", "currency": "USD"},
        {"amount": "9.00", "currency": "USD", "csrf_token": "forged"},
    ]
    for form_data in forms:  # without the token, or with a wrong one
        for path in ("/ui/costs/budgets", budget_path):
            refused = await page.request.post(path, form=form_data, max_redirects=0)
            assert refused.status == 403, path
    await page.goto("/ui/costs")
    await expect(page.locator("#budget-list tbody tr")).to_have_count(1)  # nothing made


async def test_another_tenants_servers_workspaces_and_budgets_are_not_found(
    page: Page, console_server: ConsoleServer
) -> None:
    owner, _, _ = console_server.tenant("owner")
    server = console_server.server(owner, "their-mx")
    space = workspace(console_server, owner, "Their client")

    async def a_budget() -> uuid.UUID:
        async with console_server.db.tenant_session(owner) as session:
            data = BudgetCreate(workspace_id=space, amount=Decimal("10"), currency="USD")
            return (await create_budget(session, owner, data)).id

    budget = console_server.run(a_budget())
    _, other_key, _ = console_server.tenant("other")
    await sign_in(page, other_key)
    for path in (
        f"/ui/usage/servers/{server}",
        f"/ui/usage/servers/{server}/chart?range=1h",
        f"/ui/usage/servers/{server}/export.csv",
        f"/ui/usage?workspace={space}",
        f"/ui/usage/trends?workspace={space}",
        f"/ui/costs/budgets/{budget}",
        f"/ui/costs/workspaces/{space}/statement",
        f"/ui/costs/workspaces/{space}/statement.csv",
    ):
        response = await page.request.get(path)
        assert response.status == 404, path
        body = await response.text()
        assert "their-mx" not in body and "Their client" not in body, path
    await page.goto("/ui/costs")
    csrf = await page.locator("input[name=csrf_token]").first.input_value()
    changed = await page.request.post(
        f"/ui/costs/budgets/{budget}",
        form={"csrf_token": csrf, "amount": "1.00", "currency": "USD", "thresholds": "80"},
    )
    assert changed.status == 404
    refused = await page.request.post(
        "/ui/costs/budgets",
        form={"csrf_token": csrf, "workspace_id": str(space), "amount": "1.00",
              "currency": "USD", "thresholds": "80"},
    )  # fmt: skip
    assert refused.status == 404
    await expect(page.locator("#workspaces")).to_have_count(0)
