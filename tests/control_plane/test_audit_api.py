"""The audit log: every change through the API or the CLI, who made it, from where; append-only
and tenant-scoped, on both databases."""

from __future__ import annotations

import getpass
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, text, update

from control_plane.audit import service as audit
from control_plane.audit.models import AuditEvent
from control_plane.db.engine import Database
from control_plane.db.tenancy import TENANT_ROLE
from control_plane.workspaces.models import Workspace
from tests.conftest import MakeTenant, TenantHandle
from tests.control_plane.test_cross_tenant import (
    example_body,
    fill,
    objects_of,
    operations,
    secured,
)
from tests.support.cli_runner import invoke_cli

EVENTS = "/api/v1/audit-events"


async def events(
    client: httpx.AsyncClient, headers: dict[str, str], **params: str
) -> list[dict[str, Any]]:
    response = await client.get(EVENTS, params=params, headers=headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def hint_of(client: httpx.AsyncClient, tenant: TenantHandle) -> str:
    response = await client.get(f"/api/v1/api-keys/{tenant.key_id}", headers=tenant.headers)
    hint: str = response.json()["hint"]
    return hint


async def test_changes_through_the_api_name_key_address_action_and_object(
    client: httpx.AsyncClient, make_tenant: MakeTenant
) -> None:
    tenant = await make_tenant()
    h = tenant.headers
    ws = (await client.post("/api/v1/workspaces", json={"name": "audited"}, headers=h)).json()
    renamed = await client.patch(
        f"/api/v1/workspaces/{ws['id']}", json={"name": "renamed"}, headers=h
    )
    assert renamed.status_code == 200
    server = await client.post(
        "/api/v1/servers",
        json={"name": "mx", "provider": "manual", "mail_stack": "none"},
        headers=h,
    )
    sid = server.json()["id"]
    policy = await client.put(
        f"/api/v1/servers/{sid}/backup-policy", json={"repository_url": "/srv/r"}, headers=h
    )
    assert policy.status_code == 200, policy.text
    command = await client.post(
        f"/api/v1/servers/{sid}/commands", json={"kind": "ping", "payload": {}}, headers=h
    )
    assert command.status_code == 201, command.text
    assert (await client.delete(f"/api/v1/workspaces/{ws['id']}", headers=h)).status_code == 204

    seen = [e for e in await events(client, h) if e["key_id"] == tenant.key_id]
    assert [(e["action"], e["object_type"], e["object_id"], e["status"]) for e in seen] == [
        ("workspace.create", "workspace", ws["id"], 201),
        ("workspace.update", "workspace", ws["id"], 200),
        ("server.create", "server", sid, 201),
        ("backup_policy.put", "server", sid, 200),
        ("command.create", "command", command.json()["id"], 201),
        ("workspace.delete", "workspace", ws["id"], 204),
    ]
    first = seen[0]
    assert first["actor_kind"] == "api_key"
    assert first["key_name"] == "owner"
    assert first["key_hint"] == await hint_of(client, tenant)
    assert first["address"] == "127.0.0.1"  # httpx's ASGI transport's client address
    assert first["tenant_id"] == tenant.id
    assert first["request"] == "POST /api/v1/workspaces"
    assert first["succeeded"] is True
    assert datetime.fromisoformat(first["at"]) > datetime.now(UTC) - timedelta(minutes=1)
    # reading records nothing
    assert not any(e["request"].startswith("GET") for e in seen)


async def test_refused_and_failed_attempts_are_recorded_rolled_back_changes_are_not(
    client: httpx.AsyncClient, make_tenant: MakeTenant
) -> None:
    victim, intruder = await make_tenant(), await make_tenant()
    ws = await client.post("/api/v1/workspaces", json={"name": "mine"}, headers=victim.headers)
    target = ws.json()["id"]
    stolen = await client.delete(f"/api/v1/workspaces/{target}", headers=intruder.headers)
    assert stolen.status_code == 404
    twin = await client.post("/api/v1/workspaces", json={"name": "mine"}, headers=victim.headers)
    assert twin.status_code == 409  # its insert was rolled back
    bad = await client.post("/api/v1/workspaces", json={"name": ""}, headers=victim.headers)
    assert bad.status_code == 422
    admin_only = await client.post("/api/v1/tenants", json={"name": "x"}, headers=victim.headers)
    assert admin_only.status_code == 403

    (attempt,) = await events(client, intruder.headers, object_id=target)
    assert (attempt["action"], attempt["status"], attempt["succeeded"]) == (
        "workspace.delete",
        404,
        False,
    )
    assert attempt["key_id"] == intruder.key_id and attempt["tenant_id"] == intruder.id
    own = await events(client, victim.headers, key_id=victim.key_id)
    assert [(e["action"], e["status"], e["succeeded"]) for e in own] == [
        ("workspace.create", 201, True),
        ("workspace.create", 409, False),
        ("workspace.create", 422, False),
        ("tenant.create", 403, False),
    ]
    assert [e["object_id"] for e in own[:2]] == [target, None]


async def test_filters_by_object_key_and_time(
    client: httpx.AsyncClient, make_tenant: MakeTenant, admin_headers: dict[str, str]
) -> None:
    tenant = await make_tenant()
    h = tenant.headers
    before = datetime.now(UTC)
    one = (await client.post("/api/v1/workspaces", json={"name": "one"}, headers=h)).json()
    two = (await client.post("/api/v1/workspaces", json={"name": "two"}, headers=h)).json()
    await client.patch(f"/api/v1/workspaces/{one['id']}", json={"name": "uno"}, headers=h)
    second_key = await client.post("/api/v1/api-keys", json={"name": "ci"}, headers=h)
    ci = {"Authorization": f"Bearer {second_key.json()['key']}"}
    await client.patch(f"/api/v1/workspaces/{two['id']}", json={"name": "dos"}, headers=ci)

    by_object = await events(client, h, object_type="workspace", object_id=one["id"])
    assert [e["action"] for e in by_object] == ["workspace.create", "workspace.update"]
    by_key = await events(client, h, key_id=second_key.json()["id"])
    assert [(e["action"], e["object_id"], e["key_name"]) for e in by_key] == [
        ("workspace.update", two["id"], "ci")
    ]
    later = await events(client, h, **{"from": before.isoformat()})
    assert {e["object_id"] for e in later} >= {one["id"], two["id"]}
    assert await events(client, h, **{"to": before.isoformat()}) == [
        e for e in await events(client, h) if datetime.fromisoformat(e["at"]) < before
    ]
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert await events(client, h, **{"from": future}) == []
    naive = await client.get(EVENTS, params={"from": "2026-01-01T00:00:00"}, headers=h)
    assert naive.status_code == 422
    assert naive.json()["errors"][0]["field"] == "query.from"
    # an admin key can narrow to one tenant
    assert {e["tenant_id"] for e in await events(client, admin_headers, tenant_id=tenant.id)} == {
        tenant.id
    }


async def test_pages_follow_each_other(client: httpx.AsyncClient, make_tenant: MakeTenant) -> None:
    tenant = await make_tenant()
    for name in ("a", "b", "c"):
        await client.post("/api/v1/workspaces", json={"name": name}, headers=tenant.headers)
    page = (await client.get(EVENTS, params={"limit": 2}, headers=tenant.headers)).json()
    assert len(page["items"]) == 2 and page["next_after"] == page["items"][-1]["id"]
    rest = await events(client, tenant.headers, after=page["next_after"])
    ids = [e["id"] for e in page["items"] + rest]
    assert len(ids) == len(set(ids)) == len(await events(client, tenant.headers))


async def test_newest_first_pages_back(client: httpx.AsyncClient, make_tenant: MakeTenant) -> None:
    tenant = await make_tenant()
    for name in ("a", "b", "c"):
        await client.post("/api/v1/workspaces", json={"name": name}, headers=tenant.headers)
    ids = [e["id"] for e in await events(client, tenant.headers)]
    page = await events(client, tenant.headers, newest_first="true", limit="2")
    rest = await events(client, tenant.headers, newest_first="true", after=page[-1]["id"])
    assert [e["id"] for e in page + rest] == ids[::-1]


async def test_tenants_see_only_their_own_admins_see_all(
    client: httpx.AsyncClient, make_tenant: MakeTenant, admin_headers: dict[str, str]
) -> None:
    a, b = await make_tenant(), await make_tenant()
    await client.post("/api/v1/workspaces", json={"name": "a-ws"}, headers=a.headers)
    await client.post("/api/v1/workspaces", json={"name": "b-ws"}, headers=b.headers)
    seen_by_a = await events(client, a.headers)
    assert seen_by_a and {e["tenant_id"] for e in seen_by_a} == {a.id}
    # the admin made a's key: that is a's business; making the tenant itself is not
    assert ("api_key.create", a.key_id) in {(e["action"], e["object_id"]) for e in seen_by_a}
    assert all(e["action"] != "tenant.create" for e in seen_by_a)
    b_event = (await events(client, b.headers))[-1]
    hidden = await client.get(f"{EVENTS}/{b_event['id']}", headers=a.headers)
    assert hidden.status_code == 404 and "b-ws" not in hidden.text
    assert (await client.get(f"{EVENTS}/{b_event['id']}", headers=b.headers)).json() == b_event

    everything = await events(client, admin_headers, object_type="tenant", object_id=a.id)
    assert [(e["action"], e["tenant_id"], e["status"]) for e in everything] == [
        ("tenant.create", None, 201)
    ]


async def test_no_route_changes_or_deletes_an_event(
    client: httpx.AsyncClient, app: FastAPI, make_tenant: MakeTenant, db: Database
) -> None:
    tenant = await make_tenant()
    await client.post("/api/v1/workspaces", json={"name": "w"}, headers=tenant.headers)
    event = (await events(client, tenant.headers))[-1]
    paths = {p: set(ops) for p, ops in app.openapi()["paths"].items() if "audit" in p}
    assert paths == {EVENTS: {"get"}, EVENTS + "/{audit_event_id}": {"get"}}
    for method in ("PUT", "PATCH", "DELETE", "POST"):
        response = await client.request(
            method, f"{EVENTS}/{event['id']}", json={}, headers=tenant.headers
        )
        assert response.status_code == 405, (method, response.text)
    assert (await client.get(f"{EVENTS}/{event['id']}", headers=tenant.headers)).json() == event


async def test_the_database_refuses_update_and_delete(db: Database) -> None:
    """Even the control plane's own (system) session cannot rewrite history."""
    async with db.session() as session:
        event = await audit.record(session, audit.Actor.cli(), "test.write", "test", uuid.uuid4())
    for statement in (
        update(AuditEvent).where(AuditEvent.id == event.id).values(action="forged"),
        text("DELETE FROM audit_events WHERE id = :id").bindparams(id=event.id),
    ):
        with pytest.raises(Exception, match="append-only"):
            async with db.session() as session:
                await session.execute(statement)
    async with db.session() as session:
        kept = await session.scalar(select(AuditEvent).where(AuditEvent.id == event.id))
    assert kept is not None and kept.action == "test.write"


async def test_tenant_role_cannot_see_admin_events_or_change_its_own(
    db: Database, make_tenant: MakeTenant
) -> None:
    """Row-level security, below the ORM: raw SQL as the tenant's role (PostgreSQL)."""
    if db.dialect != "postgresql":
        pytest.skip("row-level security is a PostgreSQL feature")
    tenant = await make_tenant()  # the admin's tenant.create is a NULL-tenant event
    tenant_id = uuid.UUID(tenant.id)
    async with db.tenant_session(tenant_id) as session:
        assert await session.scalar(text("SELECT current_user")) == TENANT_ROLE
        owners = set((await session.scalars(text("SELECT tenant_id FROM audit_events"))).all())
    assert owners == {tenant_id}
    for statement in ("DELETE FROM audit_events", "UPDATE audit_events SET action = 'x'"):
        with pytest.raises(Exception, match="permission denied"):
            async with db.tenant_session(tenant_id) as session:
                await session.execute(text(statement))
    with pytest.raises(Exception, match="row-level security"):  # no admin-only row either
        async with db.tenant_session(tenant_id) as session:
            await session.execute(
                text(
                    "INSERT INTO audit_events (id, at, actor_kind, address, action, request,"
                    " succeeded) VALUES (:i, now(), 'cli', 'local', 'forged', '', true)"
                ),
                {"i": uuid.uuid4()},
            )


async def test_record_and_latest_for_later_features(db: Database, make_tenant: MakeTenant) -> None:
    """The service call features use to say who did what ("acknowledged by")."""
    tenant = await make_tenant()
    thing = uuid.uuid4()
    actor = audit.Actor(kind="api_key", address="192.0.2.7", key_name="ops", key_hint="mf_…1")
    async with db.tenant_session(uuid.UUID(tenant.id)) as session:
        await audit.record(session, actor, "alert.acknowledge", "alert", thing)
    async with db.session() as session:
        found = await audit.latest(session, "alert", thing, "alert.acknowledge")
        assert await audit.latest(session, "alert", thing, "alert.resolve") is None
    assert found is not None
    assert (found.key_name, found.address, str(found.tenant_id)) == ("ops", "192.0.2.7", tenant.id)


async def test_a_cli_change_is_recorded_as_the_local_cli(
    database_url: str, db: Database, client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    env = {"MAILFLEET_DATABASE_URL": database_url}  # in process: tests/support/cli_runner.py
    made = invoke_cli("tenant", "create", f"cli-audit-{uuid.uuid4().hex[:8]}", env=env)
    assert made.returncode == 0, made.stderr
    tenant_id = made.stdout.strip()
    key = invoke_cli("api-key", "create", "--tenant", tenant_id, "--name", "from-cli", env=env)
    assert key.returncode == 0, key.stderr
    listed = invoke_cli("tenant", "list", env=env)  # a read records nothing
    assert listed.returncode == 0

    tenant_events = await events(client, admin_headers, object_type="tenant", object_id=tenant_id)
    assert len(tenant_events) == 1
    (created,) = tenant_events
    assert (created["actor_kind"], created["user"], created["address"]) == (
        "cli",
        getpass.getuser(),
        "local",
    )
    assert (created["action"], created["tenant_id"], created["key_id"]) == (
        "tenant.create",
        None,
        None,
    )
    assert created["request"] == "mailfleet tenant create"
    (key_event,) = await events(client, admin_headers, tenant_id=tenant_id)
    assert (key_event["action"], key_event["object_type"]) == ("api_key.create", "api_key")
    assert key_event["actor_kind"] == "cli"


async def test_the_record_commits_with_the_change_not_after_it(
    db: Database, make_tenant: MakeTenant
) -> None:
    """The record is part of the change's own commit (no middleware involved), and a change
    that rolls back leaves no record claiming it happened."""
    tenant = await make_tenant()
    tenant_id = uuid.UUID(tenant.id)
    actor = audit.Actor(kind="api_key", address="198.51.100.1", tenant_id=tenant_id)
    pending = audit.api_pending(actor, "POST", "/api/v1/workspaces", {}, 201)
    async with db.tenant_session(tenant_id) as session:
        session.info[audit.PENDING_KEY] = pending
        made = Workspace(name="in-one-commit")
        session.add(made)
    assert pending.written
    rolled_back = audit.api_pending(actor, "POST", "/api/v1/workspaces", {}, 201)

    async def fail_after_writing() -> None:
        async with db.tenant_session(tenant_id) as session:
            session.info[audit.PENDING_KEY] = rolled_back
            session.add(Workspace(name="never"))
            await session.flush()
            raise RuntimeError("the route failed after writing")

    with pytest.raises(RuntimeError):
        await fail_after_writing()
    assert not rolled_back.written
    async with db.session() as session:
        rows = (
            await session.scalars(select(AuditEvent).where(AuditEvent.address == "198.51.100.1"))
        ).all()
    assert [(r.action, r.object_id, r.tenant_id) for r in rows] == [
        ("workspace.create", made.id, tenant_id)
    ]


async def test_every_route_that_may_change_something_is_recorded(
    client: httpx.AsyncClient, app: FastAPI, make_tenant: MakeTenant, db: Database
) -> None:
    """Walks the OpenAPI document like the tenancy walk: no route is left out, none recorded
    twice, each under its own path, whether it succeeds (its own creates) or is refused
    (another tenant's ids: 404; an admin route: 403)."""
    victim, intruder = await make_tenant(), await make_tenant()
    ids = await objects_of(client, victim, db)
    walked = 0
    for method, path, spec in operations(app):
        if method == "GET" or not secured(spec):
            continue
        before = await events(client, intruder.headers, key_id=intruder.key_id, limit="500")
        response = await client.request(
            method, fill(path, ids), json=example_body(app, spec), headers=intruder.headers
        )
        status = response.status_code
        assert status < 500, (method, path, response.text)
        after = await events(client, intruder.headers, key_id=intruder.key_id, limit="500")
        new = [e for e in after if e not in before]
        assert [(e["request"], e["status"], e["succeeded"]) for e in new] == [
            (f"{method} {path}", status, status < 400)
        ], (method, path, status)
        walked += 1
    assert walked >= 30
