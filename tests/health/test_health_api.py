"""The health API: a server's checks and overall state, a run now, the history of changes,
the sweep's lag on /metrics; another tenant's key sees none of it (404)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import delete, update

from control_plane.db.base import utcnow
from control_plane.db.engine import Database
from control_plane.health import schedule
from control_plane.health.models import HealthSchedule
from control_plane.servers.models import Server
from tests.conftest import MakeTenant, TenantHandle

ERA = datetime(1990, 1, 1, tzinfo=UTC)  # only this test's schedule is due this early


async def a_server(
    client: httpx.AsyncClient, tenant: TenantHandle, db: Database, *, ready: bool = True
) -> str:
    response = await client.post(
        "/api/v1/servers",
        json={"name": f"hc-{uuid.uuid4().hex[:6]}", "mail_stack": "none"},
        headers=tenant.headers,
    )
    assert response.status_code == 201, response.text
    server_id = str(response.json()["id"])
    if ready:
        async with db.session() as session:
            server = await session.get(Server, uuid.UUID(server_id))
            assert server is not None
            server.state = "ready"
    return server_id


async def beat(db: Database, server_id: str) -> None:
    async with db.session() as session:
        await session.execute(
            update(Server)
            .where(Server.id == uuid.UUID(server_id))
            .values(last_heartbeat_at=utcnow())
        )


async def test_health_run_history(
    client: httpx.AsyncClient, make_tenant: MakeTenant, db: Database
) -> None:
    tenant = await make_tenant()
    server_id = await a_server(client, tenant, db)
    base = f"/api/v1/servers/{server_id}/health"
    started = utcnow()

    empty = await client.get(base, headers=tenant.headers)
    assert empty.status_code == 200, empty.text
    assert empty.json()["overall"] == "unknown" and empty.json()["checks"] == []

    run = await client.post(f"{base}/run", headers=tenant.headers)
    assert run.status_code == 200, run.text
    body = run.json()
    results = {r["check"]: r for r in body["results"]}
    assert results["agent.link"]["state"] == "failing"
    assert results["agent.link"]["severity"] == "critical"
    assert "never connected" in results["agent.link"]["detail"]
    link = next(c for c in body["checks"] if c["check"] == "agent.link")
    assert link["pending"]["state"] == "failing"  # the flap guard waits for its re-check
    assert body["next_run_at"] is not None and body["last_run_at"] is not None

    await beat(db, server_id)
    run = await client.post(f"{base}/run", headers=tenant.headers)
    assert run.status_code == 200, run.text
    health = (await client.get(base, headers=tenant.headers)).json()
    checks = {c["check"]: c for c in health["checks"]}
    link = checks["agent.link"]
    assert (link["state"], link["severity"], link["pending"]) == ("ok", "info", None)
    assert link["threshold"].startswith("a heartbeat within")
    assert link["observed"].startswith("last heartbeat")
    for field in ("detail", "last_run_at", "changed_at", "unknowns_in_a_row"):
        assert field in link
    assert not any(c.startswith(("smtp.", "imap.", "mailu.", "backup.")) for c in checks)
    assert health["overall"] in ("ok", "unknown")  # resources have no samples: unknown

    history = await client.get(
        f"{base}/history",
        params={"from": started.isoformat(), "to": (utcnow() + timedelta(seconds=1)).isoformat()},
        headers=tenant.headers,
    )
    assert history.status_code == 200, history.text
    changes = [(c["check"], c["state"]) for c in history.json()["items"]]
    assert ("agent.link", "unknown") in changes and ("agent.link", "ok") in changes
    before = await client.get(
        f"{base}/history", params={"to": started.isoformat()}, headers=tenant.headers
    )
    assert before.status_code == 200 and before.json()["items"] == []


async def test_bad_history_times_name_the_field(
    client: httpx.AsyncClient, make_tenant: MakeTenant, db: Database
) -> None:
    tenant = await make_tenant()
    base = f"/api/v1/servers/{await a_server(client, tenant, db)}/health/history"
    naive = await client.get(base, params={"from": "2026-11-30T12:00:00"}, headers=tenant.headers)
    assert naive.status_code == 422 and "query.from" in naive.text
    backwards = await client.get(
        base,
        params={"from": "2026-11-30T12:00:00Z", "to": "2026-11-30T11:00:00Z"},
        headers=tenant.headers,
    )
    assert backwards.status_code == 422 and "query.to" in backwards.text
    garbage = await client.get(base, params={"from": "yesterday"}, headers=tenant.headers)
    assert garbage.status_code == 422 and "from" in garbage.text


async def test_a_server_not_ready_is_not_checked(
    client: httpx.AsyncClient, make_tenant: MakeTenant, db: Database
) -> None:
    tenant = await make_tenant()
    server_id = await a_server(client, tenant, db, ready=False)
    run = await client.post(f"/api/v1/servers/{server_id}/health/run", headers=tenant.headers)
    assert run.status_code == 409, run.text
    assert "ready" in run.json()["detail"]


async def test_another_tenants_key_gets_404(
    client: httpx.AsyncClient,
    make_tenant: MakeTenant,
    db: Database,
    admin_headers: dict[str, str],
) -> None:
    owner, other = await make_tenant(), await make_tenant()
    server_id = await a_server(client, owner, db)
    base = f"/api/v1/servers/{server_id}/health"
    assert (await client.post(f"{base}/run", headers=owner.headers)).status_code == 200
    for method, path in (("GET", base), ("GET", f"{base}/history"), ("POST", f"{base}/run")):
        response = await client.request(method, path, headers=other.headers)
        assert response.status_code == 404, (method, path, response.text)
        assert server_id in response.text or "server" in response.text
    admin = await client.get(base, headers=admin_headers)
    assert admin.status_code == 200 and admin.json()["checks"]
    missing = await client.get(f"/api/v1/servers/{uuid.uuid4()}/health", headers=owner.headers)
    assert missing.status_code == 404


async def test_the_sweep_lag_is_exported(
    client: httpx.AsyncClient,
    make_tenant: MakeTenant,
    db: Database,
    admin_headers: dict[str, str],
) -> None:
    tenant = await make_tenant()
    server_id = uuid.UUID(await a_server(client, tenant, db))
    async with db.session() as session:
        assert await schedule.lag_seconds(session, ERA) == 0.0
        server = await session.get(Server, server_id)
        assert server is not None
        await schedule.ensure_row(session, server, ERA - timedelta(seconds=100))
    async with db.session() as session:
        assert await schedule.lag_seconds(session, ERA) == 100.0
        await session.execute(  # being checked: not behind
            update(HealthSchedule)
            .where(HealthSchedule.server_id == server_id)
            .values(lease_owner="x", lease_expires_at=ERA + timedelta(seconds=60))
        )
    async with db.session() as session:
        assert await schedule.lag_seconds(session, ERA) == 0.0
        await session.execute(delete(HealthSchedule).where(HealthSchedule.server_id == server_id))
    exported = await client.get("/metrics", headers=admin_headers)
    assert exported.status_code == 200
    line = next(
        line
        for line in exported.text.splitlines()
        if line.startswith("mailfleet_health_sweep_lag_seconds ")
    )
    assert float(line.split()[1]) >= 0
    assert 'mailfleet_health_checks{severity="' in exported.text
