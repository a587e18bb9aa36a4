"""The incidents, silences and maintenance-window API: what a tenant sees and does, what
another tenant's key gets (404), and bad input (422 naming the field, nothing changed)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx

from control_plane.db.base import utcnow
from control_plane.db.engine import Database
from tests.conftest import MakeTenant, TenantHandle
from tests.incidents.helpers import a_server, incidents_of, observe, open_incident, signal


async def tenant_with_incidents(
    db: Database, make_tenant: MakeTenant
) -> tuple[TenantHandle, uuid.UUID]:
    tenant = await make_tenant()
    server = await a_server(db, tenant.id)
    now = utcnow()
    await observe(
        db,
        now,
        signal(tenant.id, server, "smtp.25"),
        signal(tenant.id, server, "disk./", severity="warning"),
        signal(tenant.id, server, "cpu", severity="warning"),
    )
    await observe(db, now, signal(tenant.id, server, "cpu", "ok", "info"))
    return tenant, server


def fields(response: httpx.Response) -> list[str]:
    assert response.headers["content-type"].startswith("application/problem+json")
    return [e["field"] for e in response.json()["errors"]]


async def test_list_filters_and_pages(
    client: httpx.AsyncClient, db: Database, make_tenant: MakeTenant
) -> None:
    tenant, server = await tenant_with_incidents(db, make_tenant)
    listed = await client.get("/api/v1/incidents", headers=tenant.headers)
    assert listed.status_code == 200
    assert sorted(i["check"] for i in listed.json()["items"]) == ["cpu", "disk./", "smtp.25"]

    opened = await client.get("/api/v1/incidents?state=open", headers=tenant.headers)
    assert sorted(i["check"] for i in opened.json()["items"]) == ["disk./", "smtp.25"]
    resolved = (await client.get("/api/v1/incidents?state=resolved", headers=tenant.headers)).json()
    [cpu] = resolved["items"]
    assert (cpu["check"], cpu["resolved_by"], cpu["severity"]) == ("cpu", "auto", "warning")
    assert cpu["server_id"] == str(server) and cpu["escalation"]["step"] is None

    other = await a_server(db, tenant.id, "mx2")
    by_server = await client.get(f"/api/v1/incidents?server_id={other}", headers=tenant.headers)
    assert by_server.json()["items"] == []

    first = (await client.get("/api/v1/incidents?limit=2", headers=tenant.headers)).json()
    assert len(first["items"]) == 2 and first["next_after"] is not None
    rest = await client.get(
        f"/api/v1/incidents?limit=2&after={first['next_after']}", headers=tenant.headers
    )
    assert len(rest.json()["items"]) == 1 and rest.json()["next_after"] is None


async def test_newest_first_pages_back_and_admins_narrow_to_a_tenant(
    client: httpx.AsyncClient,
    db: Database,
    make_tenant: MakeTenant,
    admin_headers: dict[str, str],
) -> None:
    tenant, _ = await tenant_with_incidents(db, make_tenant)
    await tenant_with_incidents(db, make_tenant)  # another tenant's, hidden from the first
    oldest_first = (await client.get("/api/v1/incidents", headers=tenant.headers)).json()
    ids = [i["id"] for i in oldest_first["items"]]
    query = "/api/v1/incidents?newest_first=true&limit=2"
    first = (await client.get(query, headers=tenant.headers)).json()
    rest = (await client.get(f"{query}&after={first['next_after']}", headers=tenant.headers)).json()
    assert [i["id"] for i in first["items"] + rest["items"]] == ids[::-1]
    assert rest["next_after"] is None
    narrowed = await client.get(f"/api/v1/incidents?tenant_id={tenant.id}", headers=admin_headers)
    assert [i["id"] for i in narrowed.json()["items"]] == ids


async def test_acknowledge_comment_resolve_with_the_timeline(
    client: httpx.AsyncClient, db: Database, make_tenant: MakeTenant
) -> None:
    tenant, server = await tenant_with_incidents(db, make_tenant)
    incident = await open_incident(db, server, "smtp.25")
    base = f"/api/v1/incidents/{incident.id}"

    acked = await client.post(f"{base}/acknowledge", headers=tenant.headers)
    assert acked.status_code == 200, acked.text
    body = acked.json()
    assert body["state"] == "acknowledged" and body["acknowledged_by"].startswith("owner (")
    assert tenant.key_id in body["acknowledged_by"]
    again = await client.post(f"{base}/acknowledge", headers=tenant.headers)
    assert again.status_code == 200 and again.json()["acknowledged_at"] == body["acknowledged_at"]

    commented = await client.post(
        f"{base}/comments", json={"body": "restarting postfix"}, headers=tenant.headers
    )
    assert commented.status_code == 201
    assert commented.json()["kind"] == "commented"
    assert commented.json()["detail"] == "restarting postfix"

    resolved = await client.post(f"{base}/resolve", headers=tenant.headers)
    assert resolved.status_code == 200
    assert resolved.json()["state"] == "resolved"
    assert resolved.json()["resolved_by"] == body["acknowledged_by"]
    timeline = resolved.json()["timeline"]
    assert [e["kind"] for e in timeline] == ["triggered", "acknowledged", "commented", "resolved"]
    assert timeline[1]["actor"] == body["acknowledged_by"]
    assert timeline[3]["detail"] == f"resolved by {body['acknowledged_by']}"

    for action in ("resolve", "acknowledge"):
        refused = await client.post(f"{base}/{action}", headers=tenant.headers)
        assert refused.status_code == 409
    detail = await client.get(base, headers=tenant.headers)
    assert detail.status_code == 200 and len(detail.json()["timeline"]) == 4


async def test_another_tenants_key_gets_404_everywhere(
    client: httpx.AsyncClient,
    db: Database,
    make_tenant: MakeTenant,
    admin_headers: dict[str, str],
) -> None:
    tenant, server = await tenant_with_incidents(db, make_tenant)
    stranger = await make_tenant()
    incident = await open_incident(db, server, "smtp.25")
    base = f"/api/v1/incidents/{incident.id}"
    silence = await client.post(
        "/api/v1/silences",
        json={
            "check": "disk.*",
            "ends_at": (utcnow() + timedelta(hours=1)).isoformat(),
            "comment": "noisy",
        },
        headers=tenant.headers,
    )
    assert silence.status_code == 201
    silence_url = f"/api/v1/silences/{silence.json()['id']}"
    windows = f"/api/v1/servers/{server}/maintenance-windows"
    window = await client.post(
        windows,
        json={"ends_at": (utcnow() + timedelta(hours=1)).isoformat(), "reason": "upgrade"},
        headers=tenant.headers,
    )
    assert window.status_code == 201
    ends = (utcnow() + timedelta(hours=1)).isoformat()

    for method, url, body in [
        ("GET", base, None),
        ("POST", f"{base}/acknowledge", None),
        ("POST", f"{base}/resolve", None),
        ("POST", f"{base}/comments", {"body": "hello"}),
        ("GET", silence_url, None),
        ("POST", f"{silence_url}/expire", None),
        ("DELETE", silence_url, None),
        ("GET", windows, None),
        ("POST", windows, {"ends_at": ends}),
        ("DELETE", f"{windows}/{window.json()['id']}", None),
    ]:
        response = await client.request(method, url, json=body, headers=stranger.headers)
        assert response.status_code == 404, (method, url, response.text)
    for url in ("/api/v1/incidents", "/api/v1/silences"):
        assert (await client.get(url, headers=stranger.headers)).json()["items"] == []
    borrowed = await client.post(
        "/api/v1/silences",
        json={"server_id": str(server), "ends_at": ends, "comment": "x"},
        headers=stranger.headers,
    )
    assert borrowed.status_code == 404 and fields(borrowed) == ["body.server_id"]
    # nothing changed, and the owner (and an admin) still see it all
    assert (await open_incident(db, server, "smtp.25")).state == "open"
    assert (await client.get(silence_url, headers=tenant.headers)).json()["active"] is True
    seen = await client.get(f"/api/v1/incidents?server_id={server}", headers=admin_headers)
    assert len(seen.json()["items"]) == 3


async def test_silences_and_windows_lifecycle(
    client: httpx.AsyncClient, db: Database, make_tenant: MakeTenant
) -> None:
    tenant = await make_tenant()
    server = await a_server(db, tenant.id)
    ends = utcnow() + timedelta(hours=2)
    made = await client.post(
        "/api/v1/silences",
        json={
            "server_id": str(server),
            "check": "smtp.*",
            "severity": "critical",
            "ends_at": ends.isoformat(),
            "comment": "provider maintenance",
        },
        headers=tenant.headers,
    )
    assert made.status_code == 201, made.text
    silence = made.json()
    assert silence["created_by"].startswith("owner (") and silence["active"] is True
    assert silence["tenant_id"] == tenant.id and silence["check"] == "smtp.*"
    url = f"/api/v1/silences/{silence['id']}"
    active = await client.get("/api/v1/silences?active=true", headers=tenant.headers)
    assert [s["id"] for s in active.json()["items"]] == [silence["id"]]

    expired = await client.post(f"{url}/expire", headers=tenant.headers)
    assert expired.status_code == 200 and expired.json()["active"] is False
    assert (await client.get("/api/v1/silences?active=true", headers=tenant.headers)).json()[
        "items"
    ] == []
    assert (await client.delete(url, headers=tenant.headers)).status_code == 204
    assert (await client.get(url, headers=tenant.headers)).status_code == 404

    windows = f"/api/v1/servers/{server}/maintenance-windows"
    window = await client.post(
        windows,
        json={
            "starts_at": (utcnow() + timedelta(hours=1)).isoformat(),
            "ends_at": ends.isoformat(),
            "reason": "disk swap",
        },
        headers=tenant.headers,
    )
    assert window.status_code == 201, window.text
    assert window.json()["active"] is False and window.json()["reason"] == "disk swap"
    listed = (await client.get(windows, headers=tenant.headers)).json()["items"]
    assert [w["id"] for w in listed] == [window.json()["id"]]
    deleted = await client.delete(f"{windows}/{window.json()['id']}", headers=tenant.headers)
    assert deleted.status_code == 204
    assert (await client.get(windows, headers=tenant.headers)).json()["items"] == []


async def test_bad_input_is_a_problem_naming_the_field(
    client: httpx.AsyncClient, db: Database, make_tenant: MakeTenant
) -> None:
    tenant, server = await tenant_with_incidents(db, make_tenant)
    incident = await open_incident(db, server, "smtp.25")
    later = (utcnow() + timedelta(hours=1)).isoformat()
    earlier = (utcnow() - timedelta(hours=1)).isoformat()

    async def problem(method: str, url: str, body: object = None) -> list[str]:
        response = await client.request(method, url, json=body, headers=tenant.headers)
        assert response.status_code == 422, response.text
        return fields(response)

    assert await problem("GET", "/api/v1/incidents?state=closed") == ["query.state"]
    assert await problem("GET", "/api/v1/incidents?server_id=nope") == ["query.server_id"]
    comments = f"/api/v1/incidents/{incident.id}/comments"
    assert await problem("POST", comments, {"body": "  "}) == ["body.body"]
    assert await problem("POST", comments, {"text": "hi"}) == ["body.body", "body.text"]
    silences = "/api/v1/silences"
    assert await problem("POST", silences, {"ends_at": later, "comment": "x"}) == ["body"]
    assert await problem(
        "POST", silences, {"check": "smtp.25", "ends_at": earlier, "comment": "x"}
    ) == ["body.ends_at"]
    assert await problem(
        "POST",
        silences,
        {"check": "smtp.25", "starts_at": later, "ends_at": later, "comment": "x"},
    ) == ["body.ends_at"]
    assert await problem(
        "POST", silences, {"check": "smtp.25", "ends_at": "2030-01-01T00:00:00", "comment": "x"}
    ) == ["body.ends_at"]
    assert await problem(
        "POST", silences, {"check": "di*sk", "ends_at": later, "comment": "x"}
    ) == ["body.check"]
    assert await problem(
        "POST", silences, {"severity": "fatal", "ends_at": later, "comment": "x"}
    ) == ["body.severity"]
    assert await problem("POST", silences, {"check": "cpu", "ends_at": later}) == ["body.comment"]
    windows = f"/api/v1/servers/{server}/maintenance-windows"
    assert await problem("POST", windows, {"ends_at": earlier}) == ["body.ends_at"]
    # nothing was made or changed
    assert (await client.get(silences, headers=tenant.headers)).json()["items"] == []
    assert (await client.get(windows, headers=tenant.headers)).json()["items"] == []
    assert len(await incidents_of(db, server)) == 3
