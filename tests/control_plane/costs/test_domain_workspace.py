"""Domains carry a workspace (a shared server's cost is split by it)."""

from __future__ import annotations

import os

import httpx

from tests.conftest import MakeTenant, TenantHandle


async def workspace(client: httpx.AsyncClient, tenant: TenantHandle, name: str) -> str:
    response = await client.post("/api/v1/workspaces", json={"name": name}, headers=tenant.headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def mail_server(client: httpx.AsyncClient, tenant: TenantHandle, ws: str | None) -> str:
    response = await client.post(
        "/api/v1/servers",
        json={"name": f"mx-{os.urandom(3).hex()}", "provider": "manual", "workspace_id": ws,
              "mail_hostname": f"mx.{os.urandom(3).hex()}.example"},
        headers=tenant.headers,
    )  # fmt: skip
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def test_domain_workspace_defaults_changes_and_stays_in_tenant(
    client: httpx.AsyncClient, make_tenant: MakeTenant
) -> None:
    owner, other = await make_tenant(), await make_tenant()
    first, second = await workspace(client, owner, "a"), await workspace(client, owner, "b")
    foreign = await workspace(client, other, "theirs")
    server = await mail_server(client, owner, first)

    def domain(suffix: str, **extra: str) -> dict[str, str]:
        return {"name": f"d{suffix}-{os.urandom(4).hex()}.example", "server_id": server, **extra}

    made = await client.post("/api/v1/domains", json=domain("1"), headers=owner.headers)
    assert made.status_code == 201 and made.json()["workspace_id"] == first  # the server's
    chosen = await client.post(
        "/api/v1/domains", json=domain("2", workspace_id=second), headers=owner.headers
    )
    assert chosen.status_code == 201 and chosen.json()["workspace_id"] == second
    refused = await client.post(
        "/api/v1/domains", json=domain("3", workspace_id=foreign), headers=owner.headers
    )
    assert refused.status_code == 404 and "body.workspace_id" in refused.text
    url = f"/api/v1/domains/{made.json()['id']}"
    moved = await client.patch(url, json={"workspace_id": second}, headers=owner.headers)
    assert moved.status_code == 200 and moved.json()["workspace_id"] == second
    bad = await client.patch(url, json={"workspace_id": foreign}, headers=owner.headers)
    assert bad.status_code == 404 and "body.workspace_id" in bad.text
    assert (await client.get(url, headers=owner.headers)).json()["workspace_id"] == second
    cleared = await client.patch(url, json={"workspace_id": None}, headers=owner.headers)
    assert cleared.status_code == 200 and cleared.json()["workspace_id"] is None
    intruder = await client.patch(url, json={"workspace_id": foreign}, headers=other.headers)
    assert intruder.status_code == 404
