from __future__ import annotations

import httpx

from tests.conftest import MakeTenant


async def test_tenant_manages_its_workspaces(
    client: httpx.AsyncClient, make_tenant: MakeTenant
) -> None:
    tenant = await make_tenant()
    created = await client.post(
        "/api/v1/workspaces",
        json={"name": "Client A", "description": "first"},
        headers=tenant.headers,
    )
    assert created.status_code == 201
    ws = created.json()
    assert ws["tenant_id"] == tenant.id

    patched = await client.patch(
        f"/api/v1/workspaces/{ws['id']}", json={"description": "changed"}, headers=tenant.headers
    )
    assert patched.json()["description"] == "changed"
    assert patched.json()["name"] == "Client A"

    listed = (await client.get("/api/v1/workspaces", headers=tenant.headers)).json()
    assert [w["id"] for w in listed["items"]] == [ws["id"]]

    assert (
        await client.delete(f"/api/v1/workspaces/{ws['id']}", headers=tenant.headers)
    ).status_code == 204
    listed = (await client.get("/api/v1/workspaces", headers=tenant.headers)).json()
    assert listed["items"] == []


async def test_admin_must_name_the_tenant(
    client: httpx.AsyncClient, admin_headers: dict[str, str], make_tenant: MakeTenant
) -> None:
    missing = await client.post("/api/v1/workspaces", json={"name": "x"}, headers=admin_headers)
    assert missing.status_code == 422
    assert missing.json()["errors"][0]["field"] == "body.tenant_id"

    tenant = await make_tenant()
    made = await client.post(
        "/api/v1/workspaces", json={"name": "x", "tenant_id": tenant.id}, headers=admin_headers
    )
    assert made.status_code == 201
    by_tenant = await client.get(
        "/api/v1/workspaces", params={"tenant_id": tenant.id}, headers=admin_headers
    )
    assert [w["id"] for w in by_tenant.json()["items"]] == [made.json()["id"]]


async def test_workspace_names_are_unique_per_tenant_only(
    client: httpx.AsyncClient, make_tenant: MakeTenant
) -> None:
    first, second = await make_tenant(), await make_tenant()
    assert (
        await client.post("/api/v1/workspaces", json={"name": "Ops"}, headers=first.headers)
    ).status_code == 201
    dup = await client.post("/api/v1/workspaces", json={"name": "Ops"}, headers=first.headers)
    assert dup.status_code == 409
    assert dup.json()["errors"][0]["field"] == "body.name"
    other = await client.post("/api/v1/workspaces", json={"name": "Ops"}, headers=second.headers)
    assert other.status_code == 201


async def test_renaming_onto_an_existing_name_changes_nothing(
    client: httpx.AsyncClient, make_tenant: MakeTenant
) -> None:
    tenant = await make_tenant()
    a = (await client.post("/api/v1/workspaces", json={"name": "A"}, headers=tenant.headers)).json()
    await client.post("/api/v1/workspaces", json={"name": "B"}, headers=tenant.headers)
    clash = await client.patch(
        f"/api/v1/workspaces/{a['id']}",
        json={"name": "B", "description": "new"},
        headers=tenant.headers,
    )
    assert clash.status_code == 409
    after = (await client.get(f"/api/v1/workspaces/{a['id']}", headers=tenant.headers)).json()
    assert (after["name"], after["description"]) == ("A", "")
