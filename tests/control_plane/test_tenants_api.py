from __future__ import annotations

import httpx

from control_plane.tenants.service import TENANT_SECRET_ROOTS
from control_plane.vault.client import Vault, secret_path
from tests.conftest import MakeTenant


async def test_admin_creates_reads_renames_and_deletes_a_tenant(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    created = await client.post(
        "/api/v1/tenants", json={"name": "  Globex  "}, headers=admin_headers
    )
    assert created.status_code == 201
    tenant = created.json()
    assert tenant["name"] == "Globex"
    assert set(tenant) == {"id", "name", "cost_split", "created_at", "updated_at"}

    fetched = await client.get(f"/api/v1/tenants/{tenant['id']}", headers=admin_headers)
    assert fetched.json() == tenant

    renamed = await client.patch(
        f"/api/v1/tenants/{tenant['id']}", json={"name": "Globex Corp"}, headers=admin_headers
    )
    assert renamed.status_code == 200
    assert renamed.json()["name"] == "Globex Corp"

    deleted = await client.delete(f"/api/v1/tenants/{tenant['id']}", headers=admin_headers)
    assert deleted.status_code == 204
    gone = await client.get(f"/api/v1/tenants/{tenant['id']}", headers=admin_headers)
    assert gone.status_code == 404


async def test_duplicate_tenant_name_is_a_conflict_naming_the_field(
    client: httpx.AsyncClient, admin_headers: dict[str, str], make_tenant: MakeTenant
) -> None:
    tenant = await make_tenant()
    response = await client.post(
        "/api/v1/tenants", json={"name": tenant.name}, headers=admin_headers
    )
    assert response.status_code == 409
    problem = response.json()
    assert response.headers["content-type"] == "application/problem+json"
    assert problem["errors"][0]["field"] == "body.name"
    # the earlier tenant is intact
    still = await client.get(f"/api/v1/tenants/{tenant.id}", headers=admin_headers)
    assert still.json()["name"] == tenant.name


async def test_listing_pages_follow_creation_order(
    client: httpx.AsyncClient, admin_headers: dict[str, str], make_tenant: MakeTenant
) -> None:
    made = [await make_tenant() for _ in range(3)]
    seen: list[str] = []
    after = None
    for _ in range(1000):
        params = {"limit": "2", **({"after": after} if after else {})}
        page = (await client.get("/api/v1/tenants", params=params, headers=admin_headers)).json()
        assert len(page["items"]) <= 2
        seen += [t["id"] for t in page["items"]]
        after = page["next_after"]
        if after is None:
            break
    assert len(seen) == len(set(seen))
    positions = [seen.index(t.id) for t in made]
    assert positions == sorted(positions)


async def test_tenant_key_sees_its_own_tenant_and_cannot_manage_tenants(
    client: httpx.AsyncClient, make_tenant: MakeTenant
) -> None:
    tenant = await make_tenant()
    own = await client.get(f"/api/v1/tenants/{tenant.id}", headers=tenant.headers)
    assert own.status_code == 200
    assert own.json()["name"] == tenant.name
    for method, path, body in (
        ("GET", "/api/v1/tenants", None),
        ("POST", "/api/v1/tenants", {"name": "x"}),
        ("PATCH", f"/api/v1/tenants/{tenant.id}", {"name": "y"}),
        ("DELETE", f"/api/v1/tenants/{tenant.id}", None),
    ):
        response = await client.request(method, path, json=body, headers=tenant.headers)
        assert response.status_code == 403, (method, path)
        assert response.json()["title"] == "Forbidden"


async def test_deleting_a_tenant_removes_its_workspaces_and_keys(
    client: httpx.AsyncClient, admin_headers: dict[str, str], make_tenant: MakeTenant
) -> None:
    tenant = await make_tenant()
    ws = await client.post("/api/v1/workspaces", json={"name": "w"}, headers=tenant.headers)
    assert ws.status_code == 201
    assert (
        await client.delete(f"/api/v1/tenants/{tenant.id}", headers=admin_headers)
    ).status_code == 204
    workspace = await client.get(f"/api/v1/workspaces/{ws.json()['id']}", headers=admin_headers)
    assert workspace.status_code == 404
    # the tenant's key went with it
    assert (await client.get("/api/v1/workspaces", headers=tenant.headers)).status_code == 401


async def test_deleting_a_tenant_destroys_its_secrets_in_vault_and_no_one_elses(
    client: httpx.AsyncClient, admin_headers: dict[str, str], make_tenant: MakeTenant, vault: Vault
) -> None:
    tenant, other = await make_tenant(), await make_tenant()
    hook = {"name": "ops", "kind": "webhook", "url": "https://hooks.example/x", "secret": "s" * 24}
    for owner in (tenant, other):
        made = await client.post("/api/v1/alert-channels", json=hook, headers=owner.headers)
        assert made.status_code == 201, made.text
    await vault.put(secret_path("vps", tenant.id, "server", "mailu"), {"api_token": "t"})
    assert await vault.list(secret_path("alerts", tenant.id))

    deleted = await client.delete(f"/api/v1/tenants/{tenant.id}", headers=admin_headers)
    assert deleted.status_code == 204
    for root in TENANT_SECRET_ROOTS:
        assert await vault.list(secret_path(root, tenant.id)) == [], root
    assert len(await vault.list(secret_path("alerts", other.id))) == 1
