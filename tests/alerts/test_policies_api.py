"""Escalation policies: shapes, defaults, same-tenant channels, assignment and resolution."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from control_plane.alerts.service import PolicyStep, policy_for
from control_plane.db.engine import Database
from tests.alerts.helpers import make_channel
from tests.conftest import MakeTenant, TenantHandle

POLICIES = "/api/v1/escalation-policies"


async def make_policy(
    client: httpx.AsyncClient, headers: dict[str, str], **body: Any
) -> dict[str, Any]:
    response = await client.post(POLICIES, json=body, headers=headers)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def make_server(client: httpx.AsyncClient, tenant: TenantHandle, **extra: Any) -> str:
    response = await client.post(
        "/api/v1/servers",
        json={"name": f"s-{uuid.uuid4().hex[:6]}", "provider": "manual", "mail_stack": "none",
              **extra},
        headers=tenant.headers,
    )  # fmt: skip
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def make_workspace(client: httpx.AsyncClient, tenant: TenantHandle) -> dict[str, Any]:
    response = await client.post("/api/v1/workspaces", json={"name": "w"}, headers=tenant.headers)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_first_policy_is_the_default_and_defaults_move(
    client: httpx.AsyncClient, make_tenant: MakeTenant
) -> None:
    tenant = await make_tenant()
    a = (await make_channel(client, tenant.headers, name="a", kind="in_app"))["id"]
    b = (await make_channel(client, tenant.headers, name="b", kind="in_app"))["id"]
    first = await make_policy(
        client, tenant.headers, name="default",
        steps=[{"channel_ids": [a], "wait_minutes": 5}, {"channel_ids": [a, b],
                                                         "wait_minutes": 0.02}],
        repeat=1, repeat_interval_minutes=60,
    )  # fmt: skip
    assert first["is_default"] is True and first["tenant_id"] == tenant.id
    assert first["steps"] == [
        {"channel_ids": [a], "wait_minutes": 5.0},
        {"channel_ids": [a, b], "wait_minutes": 0.02},
    ]
    assert first["repeat"] == 1 and first["repeat_interval_minutes"] == 60.0
    second = await make_policy(client, tenant.headers, name="night", steps=[{"channel_ids": [b]}])
    assert second["is_default"] is False and second["repeat"] == 0
    moved = await client.patch(
        f"{POLICIES}/{second['id']}", json={"is_default": True}, headers=tenant.headers
    )
    assert moved.json()["is_default"] is True
    again = await client.get(f"{POLICIES}/{first['id']}", headers=tenant.headers)
    assert again.json()["is_default"] is False
    refused = await client.patch(
        f"{POLICIES}/{second['id']}", json={"is_default": False}, headers=tenant.headers
    )
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "body.is_default"
    used = await client.delete(f"/api/v1/alert-channels/{b}", headers=tenant.headers)
    assert used.status_code == 409 and "notifies this channel" in used.text
    deleted = await client.delete(f"{POLICIES}/{second['id']}", headers=tenant.headers)
    assert deleted.status_code == 204
    promoted = await client.get(f"{POLICIES}/{first['id']}", headers=tenant.headers)
    assert promoted.json()["is_default"] is True, "the remaining policy took over as default"
    duplicate = await client.post(
        POLICIES, json={"name": "default", "steps": [{"channel_ids": [a]}]}, headers=tenant.headers
    )
    assert duplicate.status_code == 409


async def test_bad_policies_name_the_field(
    client: httpx.AsyncClient, make_tenant: MakeTenant
) -> None:
    tenant, other = await make_tenant(), await make_tenant()
    mine = (await make_channel(client, tenant.headers, name="mine", kind="in_app"))["id"]
    theirs = (await make_channel(client, other.headers, name="theirs", kind="in_app"))["id"]
    cases: list[tuple[dict[str, Any], str]] = [
        ({"steps": [{"channel_ids": [mine]}, {"channel_ids": [mine, theirs]}]},
         "body.steps.1.channel_ids.1"),
        ({"steps": [{"channel_ids": [str(uuid.uuid4())]}]}, "body.steps.0.channel_ids.0"),
        ({"steps": [{"channel_ids": []}]}, "body.steps.0.channel_ids"),
        ({"steps": [{"channel_ids": [mine], "wait_minutes": -1}]}, "body.steps.0.wait_minutes"),
        ({"steps": []}, "body.steps"),
        ({"steps": [{"channel_ids": [mine]}], "repeat": -1}, "body.repeat"),
        ({"steps": [{"channel_ids": [mine]}], "repeat_interval_minutes": -5},
         "body.repeat_interval_minutes"),
        ({"steps": [{"channel_ids": [mine]}], "is_default": False}, "body.is_default"),
    ]  # fmt: skip
    for body, field in cases:
        response = await client.post(POLICIES, json={"name": "p", **body}, headers=tenant.headers)
        assert response.status_code == 422, (body, response.text)
        assert field in {e["field"] for e in response.json()["errors"]}, (body, response.text)
    assert (await client.get(POLICIES, headers=tenant.headers)).json() == []


async def test_most_specific_policy_wins(
    client: httpx.AsyncClient, make_tenant: MakeTenant, db: Database, admin_headers: dict[str, str]
) -> None:
    tenant, other = await make_tenant(), await make_tenant()
    tid = uuid.UUID(tenant.id)
    channel = (await make_channel(client, tenant.headers, name="c", kind="in_app"))["id"]
    steps = [{"channel_ids": [channel], "wait_minutes": 1}]
    default = await make_policy(client, tenant.headers, name="default", steps=steps)
    for_ws = await make_policy(client, tenant.headers, name="workspace", steps=steps)
    for_server = await make_policy(client, tenant.headers, name="server", steps=steps, repeat=2)
    ws = await make_workspace(client, tenant)
    server = await make_server(client, tenant, workspace_id=ws["id"])

    async def resolved(workspace_id: str | None, server_id: str | None) -> str | None:
        async with db.session() as session:
            found = await policy_for(
                session,
                tid,
                uuid.UUID(workspace_id) if workspace_id else None,
                uuid.UUID(server_id) if server_id else None,
            )
        return str(found.id) if found else None

    assert await resolved(None, server) == default["id"]
    patched = await client.patch(
        f"/api/v1/workspaces/{ws['id']}",
        json={"escalation_policy_id": for_ws["id"]},
        headers=tenant.headers,
    )
    assert patched.status_code == 200 and patched.json()["escalation_policy_id"] == for_ws["id"]
    assert await resolved(ws["id"], None) == for_ws["id"]
    assert await resolved(None, server) == for_ws["id"], "through the server's workspace"
    put = await client.put(
        f"/api/v1/servers/{server}/escalation-policy",
        json={"escalation_policy_id": for_server["id"]},
        headers=tenant.headers,
    )
    assert put.status_code == 200, put.text
    assert put.json()["effective"]["id"] == for_server["id"]
    async with db.session() as session:
        full = await policy_for(session, tid, uuid.UUID(ws["id"]), uuid.UUID(server))
    assert full is not None and full.repeat == 2 and full.name == "server"
    assert full.steps == (PolicyStep(channel_ids=(uuid.UUID(channel),), wait_minutes=1.0),)

    # deleting the server's policy falls back to the workspace's
    await client.delete(f"{POLICIES}/{for_server['id']}", headers=tenant.headers)
    shown = await client.get(f"/api/v1/servers/{server}/escalation-policy", headers=tenant.headers)
    assert shown.json()["escalation_policy_id"] is None
    assert shown.json()["effective"]["id"] == for_ws["id"]
    cleared = await client.patch(
        f"/api/v1/workspaces/{ws['id']}", json={"escalation_policy_id": None},
        headers=tenant.headers,
    )  # fmt: skip
    assert cleared.json()["escalation_policy_id"] is None and cleared.json()["name"] == "w"
    assert await resolved(None, server) == default["id"]

    # a tenant with none falls back to the fleet default (an admin's policy, no tenant)
    other_id = uuid.UUID(other.id)
    assert await resolved_for(db, other_id) is None
    noc = await make_channel(client, admin_headers, name=f"noc-{uuid.uuid4().hex[:6]}",
                             kind="in_app")  # fmt: skip
    fleet = await make_policy(
        client, admin_headers, name=f"fleet-{uuid.uuid4().hex[:6]}",
        steps=[{"channel_ids": [noc["id"]]}],
    )  # fmt: skip
    try:
        assert fleet["tenant_id"] is None
        assert await resolved_for(db, other_id) == fleet["id"]
        assert await resolved(None, server) == default["id"], "the tenant's own default first"
        mixed = await client.post(
            POLICIES, json={"name": "mixed", "steps": [{"channel_ids": [noc["id"]]}]},
            headers=tenant.headers,
        )  # fmt: skip
        assert mixed.status_code == 422, "a tenant's policy cannot name a fleet channel"
    finally:
        await client.delete(f"{POLICIES}/{fleet['id']}", headers=admin_headers)
        await client.delete(f"/api/v1/alert-channels/{noc['id']}", headers=admin_headers)


async def resolved_for(db: Database, tenant_id: uuid.UUID) -> str | None:
    async with db.session() as session:
        found = await policy_for(session, tenant_id, None, None)
    return str(found.id) if found else None


async def test_policies_and_assignments_never_cross_tenants(
    client: httpx.AsyncClient, make_tenant: MakeTenant
) -> None:
    victim, intruder = await make_tenant(), await make_tenant()
    channel = (await make_channel(client, victim.headers, name="c", kind="in_app"))["id"]
    policy = await make_policy(client, victim.headers, name="victim-policy",
                               steps=[{"channel_ids": [channel]}])  # fmt: skip
    server = await make_server(client, victim)
    own_server = await make_server(client, intruder)
    ws = await make_workspace(client, intruder)
    url = f"{POLICIES}/{policy['id']}"
    for method, path, body in (
        ("GET", url, None),
        ("PATCH", url, {"repeat": 3}),
        ("DELETE", url, None),
        ("GET", f"/api/v1/servers/{server}/escalation-policy", None),
        ("PUT", f"/api/v1/servers/{server}/escalation-policy", {"escalation_policy_id": None}),
    ):
        response = await client.request(method, path, json=body, headers=intruder.headers)
        assert response.status_code == 404, (method, path, response.text)
        assert "victim-policy" not in response.text
    assert (await client.get(POLICIES, headers=intruder.headers)).json() == []
    for path, method in (
        (f"/api/v1/servers/{own_server}/escalation-policy", "PUT"),
        (f"/api/v1/workspaces/{ws['id']}", "PATCH"),
    ):
        response = await client.request(
            method, path, json={"escalation_policy_id": policy["id"]}, headers=intruder.headers
        )
        assert response.status_code == 422, (path, response.text)
        assert response.json()["errors"][0]["field"] == "body.escalation_policy_id"
    as_victim = await client.post(
        POLICIES,
        json={"name": "x", "tenant_id": victim.id, "steps": [{"channel_ids": [channel]}]},
        headers=intruder.headers,
    )
    assert as_victim.status_code == 404
    unchanged = await client.get(url, headers=victim.headers)
    assert unchanged.json()["repeat"] == 0
