"""/api/v1/budgets: create, list, get, patch, delete; one per workspace and per tenant
(409); thresholds validated; another tenant's workspace or budget is 404."""

from __future__ import annotations

import httpx

from tests.conftest import MakeTenant


async def test_budget_crud_and_its_rules(
    client: httpx.AsyncClient, make_tenant: MakeTenant
) -> None:
    tenant, other = await make_tenant(), await make_tenant()
    ws = (
        await client.post("/api/v1/workspaces", json={"name": "c"}, headers=tenant.headers)
    ).json()
    made = await client.post(
        "/api/v1/budgets",
        json={"workspace_id": ws["id"], "amount": "250.00", "currency": "EUR"},
        headers=tenant.headers,
    )
    assert made.status_code == 201, made.text
    budget = made.json()
    assert budget["thresholds"] == [80, 100, 120] and budget["amount"] == "250.00"
    again = await client.post(
        "/api/v1/budgets",
        json={"workspace_id": ws["id"], "amount": "1.00", "currency": "EUR"},
        headers=tenant.headers,
    )
    assert again.status_code == 409, again.text
    whole = await client.post(
        "/api/v1/budgets", json={"amount": "900", "currency": "EUR", "thresholds": [50, 1000]},
        headers=tenant.headers,
    )  # fmt: skip
    assert whole.status_code == 201 and whole.json()["workspace_id"] is None, whole.text
    second = await client.post(
        "/api/v1/budgets", json={"amount": "1", "currency": "EUR"}, headers=tenant.headers
    )
    assert second.status_code == 409
    for bad in ([0], [1001], [], [80, 80]):
        refused = await client.post(
            "/api/v1/budgets",
            json={"workspace_id": ws["id"], "amount": "1", "currency": "EUR", "thresholds": bad},
            headers=tenant.headers,
        )
        assert refused.status_code == 422 and "body.thresholds" in refused.text, bad
    patched = await client.patch(
        f"/api/v1/budgets/{budget['id']}", json={"thresholds": [100, 90]}, headers=tenant.headers
    )
    assert patched.json()["thresholds"] == [90, 100], patched.text
    listed = await client.get("/api/v1/budgets", headers=tenant.headers)
    assert {b["id"] for b in listed.json()["items"]} == {budget["id"], whole.json()["id"]}

    # another tenant: neither the budget nor the workspace exist for it
    assert (
        await client.get(f"/api/v1/budgets/{budget['id']}", headers=other.headers)
    ).status_code == 404
    foreign = await client.post(
        "/api/v1/budgets",
        json={"workspace_id": ws["id"], "amount": "1", "currency": "EUR"},
        headers=other.headers,
    )
    assert foreign.status_code == 404 and "body.workspace_id" in foreign.text
    assert (await client.get("/api/v1/budgets", headers=other.headers)).json()["items"] == []

    status = await client.get(f"/api/v1/budgets/{budget['id']}/status", headers=tenant.headers)
    assert status.status_code == 200 and status.json()["state"] == "unknown", status.text

    gone = await client.delete(f"/api/v1/budgets/{budget['id']}", headers=tenant.headers)
    assert gone.status_code == 204
    assert (
        await client.get(f"/api/v1/budgets/{budget['id']}", headers=tenant.headers)
    ).status_code == 404
