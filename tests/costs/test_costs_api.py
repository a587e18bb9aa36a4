"""GET /api/v1/costs: the month played out through the API (JSON and CSV), tenancy, and
bad queries as 422s naming the field; PATCHing a tenant's split and a workspace's markup."""

from __future__ import annotations

import csv
import io
import uuid
from decimal import Decimal

import httpx

from control_plane.db.engine import Database
from tests.conftest import MakeTenant
from tests.costs.scenario import EXPECTED, IDLE, PROJECTED, TOTAL, play_month

NOVEMBER = {"from": "2026-11-01T00:00:00Z", "to": "2026-11-21T00:00:00Z"}


async def test_month_report_json_and_csv(
    client: httpx.AsyncClient, make_tenant: MakeTenant, db: Database, admin_headers: dict[str, str]
) -> None:
    tenant = await make_tenant()
    month = await play_month(db, uuid.UUID(tenant.id))
    names = {str(month.a): "A", str(month.b): "B", str(month.c): "C", "idle": "idle"}
    response = await client.get("/api/v1/costs", params=NOVEMBER, headers=tenant.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["tenant_id"] == tenant.id and body["group_by"] == "workspace"
    assert {names[g["key"]]: Decimal(g["cost"]) for g in body["groups"]} == {
        **EXPECTED,
        "idle": IDLE,
    }
    assert [(t["currency"], Decimal(t["cost"])) for t in body["totals"]] == [("USD", TOTAL)]
    assert [Decimal(i["cost"]) for i in body["idle"]] == [IDLE]
    (figures,) = body["month_to_date"]
    assert (Decimal(figures["actual"]), Decimal(figures["projected"])) == (TOTAL, PROJECTED)
    admin = await client.get(
        "/api/v1/costs", params={**NOVEMBER, "tenant_id": tenant.id}, headers=admin_headers
    )
    assert admin.json()["totals"] == body["totals"]

    exported = await client.get(
        "/api/v1/costs", params={**NOVEMBER, "format": "csv"}, headers=tenant.headers
    )
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(exported.text)))
    assert {r["name"]: Decimal(r["cost"]) for r in table if r["group_by"] == "workspace"} == {
        "A": EXPECTED["A"], "B": EXPECTED["B"], "C": EXPECTED["C"], "idle / unallocated": IDLE,
    }  # fmt: skip
    assert [(r["currency"], Decimal(r["cost"])) for r in table if r["group_by"] == "total"] == [
        ("USD", TOTAL)
    ]
    by_server = await client.get(
        "/api/v1/costs",
        params={**NOVEMBER, "group_by": "server", "workspace_id": str(month.a)},
        headers=tenant.headers,
    )
    assert sum(Decimal(g["cost"]) for g in by_server.json()["groups"]) == EXPECTED["A"]


async def test_another_tenants_costs_stay_hidden(
    client: httpx.AsyncClient, make_tenant: MakeTenant, db: Database
) -> None:
    victim, intruder = await make_tenant(), await make_tenant()
    month = await play_month(db, uuid.UUID(victim.id))
    foreign = await client.get(
        "/api/v1/costs", params={**NOVEMBER, "workspace_id": str(month.a)}, headers=intruder.headers
    )
    assert foreign.status_code == 404, foreign.text
    assert foreign.json()["errors"][0]["field"] == "query.workspace_id"
    named = await client.get(
        "/api/v1/costs", params={**NOVEMBER, "tenant_id": victim.id}, headers=intruder.headers
    )
    assert named.status_code == 200 and named.json()["totals"] == []
    assert victim.id not in named.text and str(month.a) not in named.text


async def test_bad_queries_name_the_field(
    client: httpx.AsyncClient, make_tenant: MakeTenant
) -> None:
    tenant = await make_tenant()
    for params, field in (
        ({"group_by": "planet"}, "query.group_by"),
        ({"from": "2026-11-21T00:00:00Z", "to": "2026-11-01T00:00:00Z"}, "query.to"),
        ({"from": "2025-01-01T00:00:00Z", "to": "2026-11-01T00:00:00Z"}, "query.from"),
        ({"format": "xml"}, "query.format"),
    ):
        response = await client.get("/api/v1/costs", params=params, headers=tenant.headers)
        assert response.status_code == 422, (params, response.text)
        assert field in [e["field"] for e in response.json()["errors"]], response.text


async def test_cost_split_and_markup_are_validated(
    client: httpx.AsyncClient, make_tenant: MakeTenant, admin_headers: dict[str, str]
) -> None:
    tenant = await make_tenant()
    ws = await client.post("/api/v1/workspaces", json={"name": "client"}, headers=tenant.headers)
    path = f"/api/v1/workspaces/{ws.json()['id']}"
    ok = await client.patch(
        path, json={"markup_percent": "12.5", "markup_fixed": "20"}, headers=tenant.headers
    )
    assert ok.status_code == 200, ok.text
    assert (Decimal(ok.json()["markup_percent"]), Decimal(ok.json()["markup_fixed"])) == (
        Decimal("12.5"),
        Decimal("20"),
    )
    for body, field in (
        ({"markup_percent": "-1"}, "body.markup_percent"),
        ({"markup_fixed": "-0.01"}, "body.markup_fixed"),
    ):
        bad = await client.patch(path, json=body, headers=tenant.headers)
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == field, bad.text
    again = await client.get(path, headers=tenant.headers)
    assert Decimal(again.json()["markup_percent"]) == Decimal("12.5")
    split = await client.patch(
        f"/api/v1/tenants/{tenant.id}", json={"cost_split": "even"}, headers=tenant.headers
    )
    if split.status_code == 403:  # tenants are an admin's to change
        split = await client.patch(
            f"/api/v1/tenants/{tenant.id}", json={"cost_split": "even"}, headers=admin_headers
        )
    assert split.status_code == 200 and split.json()["cost_split"] == "even", split.text
    bad = await client.patch(
        f"/api/v1/tenants/{tenant.id}", json={"cost_split": "random"}, headers=admin_headers
    )
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "body.cost_split"
