"""The reputation and delisting routes: results per list with score and history, a check
now, delisting requests (422 for a list not in the catalog, 409 for one not listing the
address), and another tenant's key: 404 on every route."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest_asyncio
from fastapi import FastAPI

from control_plane.api.app import create_app
from control_plane.db.engine import Database
from control_plane.mail.models import MailDomain
from control_plane.settings import Settings
from control_plane.vault.client import Vault
from tests.conftest import MakeTenant, TenantHandle
from tests.dnsbl.conftest import (
    CLEAN,
    DOMAIN_ZONE,
    LISTED,
    MAJOR_ZONE,
    MINOR_ZONE,
    OTHER_BAD_DOMAIN,
    REASON,
    REFUSED_ZONE,
    check_due,
    make_due,
)


@pytest_asyncio.fixture
async def api(
    dnsbl_settings: Settings, db: Database, vault: Vault
) -> AsyncIterator[httpx.AsyncClient]:
    app: FastAPI = create_app(dnsbl_settings, database=db, vault=vault)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://mailfleet.test") as http:
        yield http


async def a_server_with(api: httpx.AsyncClient, tenant: TenantHandle, *addresses: str) -> str:
    response = await api.post(
        "/api/v1/servers",
        json={"name": f"bl-{uuid.uuid4().hex[:6]}", "provider": "manual", "mail_stack": "none"},
        headers=tenant.headers,
    )
    assert response.status_code == 201, response.text
    server_id = str(response.json()["id"])
    for address in addresses:
        added = await api.post(
            f"/api/v1/servers/{server_id}/ips", json={"address": address}, headers=tenant.headers
        )
        assert added.status_code == 201, added.text
    return server_id


async def test_reputation_check_and_delisting(
    api: httpx.AsyncClient, make_tenant: MakeTenant
) -> None:
    tenant, other = await make_tenant(), await make_tenant()
    await a_server_with(api, tenant, LISTED, CLEAN)
    base = f"/api/v1/ips/{LISTED}"

    before = await api.get(f"{base}/reputation", headers=tenant.headers)
    assert before.status_code == 200, before.text
    body = before.json()
    assert (body["ip"], body["score"], body["listing"]) == (LISTED, None, None)
    assert {r["state"] for r in body["results"]} == {"unknown"}
    assert {r["list"] for r in body["results"]} == {MAJOR_ZONE, MINOR_ZONE, REFUSED_ZONE,
                                                    "bl-broken.test"}  # fmt: skip

    checked = await api.post(f"{base}/reputation/check", headers=tenant.headers)
    assert checked.status_code == 200, checked.text
    body = checked.json()
    assert (body["score"], body["listing"]) == (0, "listed")
    results = {r["list"]: r for r in body["results"]}
    major = results[MAJOR_ZONE]
    assert (major["state"], major["code"], major["meaning"], major["reason"]) == (
        "listed", "127.0.0.4", "XBL: exploited host", REASON,
    )  # fmt: skip
    assert major["removal_url"] == f"https://{MAJOR_ZONE}/remove" and major["name"] == "Major BL"
    assert results[REFUSED_ZONE]["state"] == "unknown"
    assert "REFUSED" in results[REFUSED_ZONE]["reason"]
    assert results["bl-broken.test"]["reason"].startswith("list broken")
    assert [h["listing"] for h in body["history"]] == ["listed"]
    assert body["history"][0]["listed"] == [MAJOR_ZONE, MINOR_ZONE]
    again = await api.post(f"{base}/reputation/check", headers=tenant.headers)
    assert again.status_code == 409 and "MAILFLEET_DNSBL_CHECK_MIN_SECONDS" in again.text

    ip = (await api.get(f"/api/v1/ips/{LISTED}", headers=tenant.headers)).json()
    assert (ip["listing"], ip["score"], ip["pause"]["paused"]) == ("listed", 0, True)
    clean = await api.post(f"/api/v1/ips/{CLEAN}/reputation/check", headers=tenant.headers)
    assert clean.status_code == 200 and clean.json()["listing"] == "unknown"  # 2 lists can't tell
    assert clean.json()["score"] == 100

    requests = f"{base}/delist-requests"
    bad = await api.post(requests, json={"list": "nowhere.test"}, headers=tenant.headers)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "body.list"
    unlisted = await api.post(requests, json={"list": REFUSED_ZONE}, headers=tenant.headers)
    assert unlisted.status_code == 409, unlisted.text
    opened = await api.post(requests, json={"list": MAJOR_ZONE}, headers=tenant.headers)
    assert opened.status_code == 201, opened.text
    request = opened.json()
    assert (request["state"], request["list"], request["name"]) == ("opened", MAJOR_ZONE,
                                                                     "Major BL")  # fmt: skip
    assert request["removal_url"] and "Major BL" in request["instructions"]
    twice = await api.post(requests, json={"list": MAJOR_ZONE}, headers=tenant.headers)
    assert twice.status_code == 409
    submitted = await api.post(f"{requests}/{request['id']}/submitted", headers=tenant.headers)
    assert submitted.status_code == 200, submitted.text
    assert submitted.json()["state"] == "submitted" and submitted.json()["next_check_at"]
    listed = await api.get(requests, headers=tenant.headers)
    assert [r["id"] for r in listed.json()["items"]] == [request["id"]]
    shown = (await api.get(f"{base}/reputation", headers=tenant.headers)).json()
    assert [r["state"] for r in shown["delist_requests"]] == ["submitted"]

    for method, path, body_ in (
        ("GET", f"{base}/reputation", None),
        ("POST", f"{base}/reputation/check", None),
        ("GET", requests, None),
        ("POST", requests, {"list": MAJOR_ZONE}),
        ("POST", f"{requests}/{request['id']}/submitted", None),
    ):
        response = await api.request(method, path, json=body_, headers=other.headers)
        assert response.status_code == 404, (method, path, response.text)
    malformed = await api.get("/api/v1/ips/not-an-ip/reputation", headers=tenant.headers)
    assert malformed.status_code == 422 and malformed.json()["errors"][0]["field"] == "path.ip"


async def test_domain_reputation(
    api: httpx.AsyncClient, make_tenant: MakeTenant, db: Database, dnsbl_settings: Settings
) -> None:
    tenant, other = await make_tenant(), await make_tenant()
    server_id = await a_server_with(api, tenant)
    async with db.session() as session:
        domain = MailDomain(
            tenant_id=uuid.UUID(tenant.id), server_id=uuid.UUID(server_id), name=OTHER_BAD_DOMAIN
        )
        session.add(domain)
    path = f"/api/v1/domains/{domain.id}/reputation"
    before = (await api.get(path, headers=tenant.headers)).json()
    assert (before["domain"], before["listing"]) == (OTHER_BAD_DOMAIN, None)
    assert [r["list"] for r in before["results"]] == [DOMAIN_ZONE]

    await make_due(db, [], [domain.id])
    assert await check_due(db, dnsbl_settings) == [OTHER_BAD_DOMAIN]
    after = (await api.get(path, headers=tenant.headers)).json()
    assert (after["listing"], after["score"]) == ("listed", 0)
    (result,) = after["results"]
    assert (result["state"], result["code"], result["reason"]) == (
        "listed", "127.0.1.2", "spam domain",
    )  # fmt: skip
    assert (await api.get(path, headers=other.headers)).status_code == 404
