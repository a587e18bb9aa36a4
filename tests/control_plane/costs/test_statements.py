"""A workspace's statement: billed amounts (cost with markup), the fixed fee, totals, as CSV
and as an escaped HTML page; another tenant's workspace is 404."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import httpx
from sqlalchemy import update

from control_plane.db.engine import Database
from control_plane.workspaces.models import Workspace
from tests.conftest import MakeTenant
from tests.control_plane.costs.ledger import a_priced_server


async def test_statement_csv_and_html(
    client: httpx.AsyncClient, make_tenant: MakeTenant, db: Database
) -> None:
    tenant, other = await make_tenant(), await make_tenant()
    made = await client.post(
        "/api/v1/workspaces", json={"name": "<Client & Co>"}, headers=tenant.headers
    )
    ws = uuid.UUID(made.json()["id"])
    async with db.session() as session:
        await session.execute(
            update(Workspace)
            .where(Workspace.id == ws)
            .values(markup_percent=Decimal("20"), markup_fixed=Decimal("5.00"))
        )
        await a_priced_server(
            session, uuid.UUID(tenant.id), ws, datetime(2026, 11, 1, tzinfo=UTC),
            datetime(2026, 12, 1, tzinfo=UTC),
        )  # fmt: skip
    url = f"/api/v1/workspaces/{ws}/statement"
    got = await client.get(
        url, params={"month": "2026-11", "format": "csv"}, headers=tenant.headers
    )
    assert got.status_code == 200, got.text
    assert got.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(got.text)))
    assert [(r["server"], r["resource"], r["amount"], r["currency"]) for r in rows] == [
        ("mx1", "server", "864.00", "USD"),  # 720.00 + 20 %
        ("", "service fee", "5.00", "USD"),  # the whole month's fixed fee
    ]
    assert rows[0]["period_start"] == "2026-11-01" and rows[0]["period_end"] == "2026-12-01"
    page = await client.get(url, params={"month": "2026-11"}, headers=tenant.headers)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "&lt;Client &amp; Co&gt;" in page.text and "<Client" not in page.text
    assert "869.00" in page.text and "864.00" in page.text
    assert "720.00</td><td>hour" in page.text  # the quantity: 720 hours
    assert "<link" not in page.text and "<script" not in page.text  # self-contained
    for month in ("2026-13", "0000-01", "9999-12"):  # no such month; none a report reaches
        bad = await client.get(url, params={"month": month}, headers=tenant.headers)
        assert bad.status_code == 422 and "query.month" in bad.text, month
    foreign = await client.get(url, params={"month": "2026-11"}, headers=other.headers)
    assert foreign.status_code == 404
