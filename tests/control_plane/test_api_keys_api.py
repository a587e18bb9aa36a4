from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import update

from control_plane.api_keys.models import ApiKey
from control_plane.api_keys.service import verify_key_cached
from control_plane.db.base import utcnow
from control_plane.db.engine import Database
from tests.conftest import MakeTenant, bearer


async def test_key_is_shown_once_and_works(
    client: httpx.AsyncClient, make_tenant: MakeTenant
) -> None:
    tenant = await make_tenant()
    created = await client.post("/api/v1/api-keys", json={"name": "ci"}, headers=tenant.headers)
    assert created.status_code == 201
    body = created.json()
    assert body["key"].startswith("mf_live_")
    assert body["tenant_id"] == tenant.id
    assert body["hint"].endswith(body["key"][-4:])

    fetched = (await client.get(f"/api/v1/api-keys/{body['id']}", headers=tenant.headers)).json()
    assert "key" not in fetched
    assert body["key"] not in str(fetched)
    listed = (await client.get("/api/v1/api-keys", headers=tenant.headers)).text
    assert body["key"] not in listed

    used = await client.get("/api/v1/workspaces", headers=bearer(body["key"]))
    assert used.status_code == 200
    after_use = (await client.get(f"/api/v1/api-keys/{body['id']}", headers=tenant.headers)).json()
    assert after_use["last_used_at"] is not None


async def test_revoked_key_is_refused_at_once(
    client: httpx.AsyncClient, make_tenant: MakeTenant
) -> None:
    tenant = await make_tenant()
    extra = (await client.post("/api/v1/api-keys", json={}, headers=tenant.headers)).json()
    assert (await client.get("/api/v1/workspaces", headers=bearer(extra["key"]))).status_code == 200
    assert (
        await client.delete(f"/api/v1/api-keys/{extra['id']}", headers=tenant.headers)
    ).status_code == 204
    refused = await client.get("/api/v1/workspaces", headers=bearer(extra["key"]))
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == "Bearer"
    assert refused.headers["content-type"] == "application/problem+json"
    listed = (await client.get("/api/v1/api-keys", headers=tenant.headers)).json()
    assert extra["id"] not in [k["id"] for k in listed["items"]]
    with_revoked = await client.get(
        "/api/v1/api-keys", params={"include_revoked": "true"}, headers=tenant.headers
    )
    revoked = [k for k in with_revoked.json()["items"] if k["id"] == extra["id"]]
    assert revoked[0]["revoked_at"] is not None


async def test_a_key_revoked_elsewhere_is_refused_within_the_cache_time(
    client: httpx.AsyncClient, make_tenant: MakeTenant, db: Database
) -> None:
    """A replica trusts a key it verified for ``api_key_cache_seconds`` (no round trip per
    request); revoked by another replica or the CLI — the row changed behind its back —
    the key is refused once that time is up. With 0, every request checks."""
    tenant = await make_tenant()
    extra = (await client.post("/api/v1/api-keys", json={}, headers=tenant.headers)).json()
    key = extra["key"]
    seconds = 0.5
    trusted = await verify_key_cached(db, key, seconds)
    assert trusted is not None and str(trusted.id) == extra["id"]
    async with db.session() as session:
        await session.execute(
            update(ApiKey).where(ApiKey.id == trusted.id).values(revoked_at=utcnow())
        )
    assert await verify_key_cached(db, key, seconds) == trusted  # still within the bound
    assert await verify_key_cached(db, key, 0) is None  # a replica that checks every time
    await asyncio.sleep(seconds)
    assert await verify_key_cached(db, key, seconds) is None
    assert (await client.get("/api/v1/workspaces", headers=bearer(key))).status_code == 401


async def test_expired_key_is_refused(client: httpx.AsyncClient, make_tenant: MakeTenant) -> None:
    tenant = await make_tenant()
    past = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    rejected = await client.post(
        "/api/v1/api-keys", json={"expires_at": past}, headers=tenant.headers
    )
    assert rejected.status_code == 422
    assert rejected.json()["errors"][0]["field"] == "body.expires_at"


async def test_scopes(
    client: httpx.AsyncClient, admin_headers: dict[str, str], make_tenant: MakeTenant
) -> None:
    tenant = await make_tenant()
    no_admin = await client.post(
        "/api/v1/api-keys", json={"scope": "admin"}, headers=tenant.headers
    )
    assert no_admin.status_code == 403
    admin_key = await client.post(
        "/api/v1/api-keys", json={"scope": "admin"}, headers=admin_headers
    )
    assert admin_key.status_code == 201
    assert admin_key.json()["key"].startswith("mf_admin_")
    assert admin_key.json()["tenant_id"] is None
    with_tenant = await client.post(
        "/api/v1/api-keys", json={"scope": "admin", "tenant_id": tenant.id}, headers=admin_headers
    )
    assert with_tenant.status_code == 422
    assert with_tenant.json()["errors"][0]["field"] == "body.tenant_id"


async def test_missing_malformed_and_unknown_keys_are_401(client: httpx.AsyncClient) -> None:
    for headers in (
        {},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        bearer("nonsense"),
        bearer("mf_live_" + "a" * 38),  # right shape, wrong checksum
    ):
        response = await client.get("/api/v1/workspaces", headers=headers)
        assert response.status_code == 401, headers
        assert response.json()["status"] == 401
