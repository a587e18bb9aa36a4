"""Invoice import: per-server variance against the rated ledger, flagged above the
tolerance; a bad CSV is a 422 naming line and column and stores nothing; admin only."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import httpx

from control_plane.costs.models import MeterSpan
from control_plane.costs.prices import set_price
from control_plane.db.engine import Database
from tests.conftest import MakeTenant
from tests.support import rows

PERIOD = {"provider": "manual", "reference": "INV-1", "period_start": "2026-11-01",
          "period_end": "2026-12-01", "currency": "USD"}  # fmt: skip
CSV = {"content-type": "text/csv"}


async def a_billed_server(db: Database, tenant_id: uuid.UUID, plan: str) -> str:
    """A server held all November on ``plan`` (720.00 a month); its instance id."""
    instance = f"hw-{uuid.uuid4().hex[:10]}"
    server = await rows.a_server_row(db, tenant_id, name=instance, instance_id=instance)
    async with db.session() as session:
        session.add(
            MeterSpan(tenant_id=tenant_id, server_id=server.id, server_name=instance,
                      workspace_id=None, provider="manual", resource="server", item=plan,
                      started_at=datetime(2026, 11, 1, tzinfo=UTC),
                      ended_at=datetime(2026, 12, 1, tzinfo=UTC))
        )  # fmt: skip
    return instance


async def test_import_variance_flags_and_bad_csv(
    client: httpx.AsyncClient, admin_headers: dict[str, str], make_tenant: MakeTenant, db: Database
) -> None:
    tenant_id = await rows.a_tenant(db, "inv")
    plan = f"plan-{uuid.uuid4().hex[:12]}"
    async with db.session() as session:
        await set_price(
            session, provider="manual", kind="plan", item=plan, amount=Decimal("720.00"),
            currency="USD", effective_from=datetime(2026, 1, 1, tzinfo=UTC), source="admin",
        )  # fmt: skip
    off, close = (
        await a_billed_server(db, tenant_id, plan),
        await a_billed_server(db, tenant_id, plan),
    )
    text = (
        "instance_id,description,amount\n"
        f"{off},plan,690.00\n{off},extra IP,10.00\n"  # 700.00 against 720.00: 2.9 % off
        f"{close},plan,715.00\n"  # 0.7 % off
        "gone-123,a deleted server,5.00\n,tax,1.50\n"
    )
    made = await client.post("/api/v1/costs/invoices", params=PERIOD, content=text,
                             headers={**admin_headers, **CSV})  # fmt: skip
    assert made.status_code == 201, made.text
    invoice = made.json()
    assert Decimal(invoice["total"]) == Decimal("1421.50")
    assert Decimal(invoice["tolerance_percent"]) == Decimal("2")
    lines = invoice["lines"]
    assert [(Decimal(x["expected"]) if x["expected"] else None) for x in lines] == [
        Decimal("720.00"), Decimal("720.00"), Decimal("720.00"), None, None]  # fmt: skip
    assert [x["flagged"] for x in lines] == [True, True, False, False, False]
    assert Decimal(lines[0]["variance"]) == Decimal("-20.00")
    assert Decimal(lines[2]["variance"]) == Decimal("-5.00")
    loose = await client.post("/api/v1/costs/invoices", params={**PERIOD, "tolerance_percent": 5},
                              content=text, headers={**admin_headers, **CSV})  # fmt: skip
    assert [x["flagged"] for x in loose.json()["lines"]] == [False] * 5
    one = await client.get(f"/api/v1/costs/invoices/{invoice['id']}", headers=admin_headers)
    assert one.json()["lines"] == lines

    before = len((await client.get("/api/v1/costs/invoices", params={"limit": 500},
                                   headers=admin_headers)).json()["items"])  # fmt: skip
    bad = await client.post("/api/v1/costs/invoices", params=PERIOD,
                            content=f"instance_id,description,amount\n{off},plan,1.00\nx,y,12.5€\n",
                            headers={**admin_headers, **CSV})  # fmt: skip
    assert bad.status_code == 422 and "line 3, column amount" in bad.text, bad.text
    assert bad.json()["errors"][0]["field"] == "body.line3.amount"
    header = await client.post("/api/v1/costs/invoices", params=PERIOD, content="a,b\n1,2\n",
                               headers={**admin_headers, **CSV})  # fmt: skip
    assert header.status_code == 422 and "instance_id" in header.text
    after = len((await client.get("/api/v1/costs/invoices", params={"limit": 500},
                                  headers=admin_headers)).json()["items"])  # fmt: skip
    assert after == before

    tenant = await make_tenant()
    refused = await client.post("/api/v1/costs/invoices", params=PERIOD, content=text,
                                headers={**tenant.headers, **CSV})  # fmt: skip
    assert refused.status_code == 403
    assert (await client.get("/api/v1/costs/invoices", headers=tenant.headers)).status_code == 403
