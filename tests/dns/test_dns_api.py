"""A domain's records through the API into a real Knot server: settings, desired vs
published, dry run, apply, withdrawal when the domain goes, and clear refusals."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from control_plane.db.engine import Database
from control_plane.dns import service
from control_plane.dns.models import DomainDns
from control_plane.servers.models import Server
from control_plane.vault.client import Vault
from tests.conftest import MakeTenant, TenantHandle
from tests.dns.test_troubleshoot import silent_resolver
from tests.support.knot import KnotServer, zone_text

__all__ = ["silent_resolver"]  # a fixture, used by name


@pytest.fixture
def zone() -> str:
    """A zone of its own per test: domain names are unique across the whole database."""
    return f"corp-{uuid.uuid4().hex[:8]}.test"


@pytest.fixture
def knot_zones(zone: str) -> dict[str, str]:
    """The domain's zone and an empty reverse zone (its PTR is really missing, not REFUSED)."""
    reverse = "0.18.198.in-addr.arpa."
    return {
        f"{zone}.": zone_text(f"{zone}.", records=["www A 127.0.0.10"]),
        reverse: zone_text(reverse),
    }


async def mail_domain(
    client: httpx.AsyncClient, tenant: TenantHandle, db: Database, zone: str
) -> Any:
    created = await client.post(
        "/api/v1/servers",
        headers=tenant.headers,
        json={"name": f"mx-{uuid.uuid4().hex[:6]}", "mail_hostname": f"mx1.{zone}"},
    )
    server_id = created.json()["id"]
    async with db.session() as session:
        server = await session.get(Server, uuid.UUID(server_id))
        assert server is not None
        server.state, server.ipv4 = "ready", "198.18.0.30"
    domain = await client.post(
        "/api/v1/domains", json={"name": zone, "server_id": server_id}, headers=tenant.headers
    )
    assert domain.status_code == 201, domain.text
    return domain.json()


def rfc2136(server: KnotServer, secret: str | None = None) -> dict[str, Any]:
    return {
        "name": f"knot-{uuid.uuid4().hex[:4]}",
        "kind": "rfc2136",
        "settings": {
            "host": server.host,
            "port": server.port,
            "key_name": server.key.name,
            "nameservers": [f"{server.host}:{server.port}"],
        },
        "secret": {"key_secret": secret or server.key.secret},
    }


async def test_records_are_planned_applied_compared_and_withdrawn(
    client: httpx.AsyncClient,
    make_tenant: MakeTenant,
    db: Database,
    vault: Vault,
    knot_primary: KnotServer,
    zone: str,
    app: FastAPI,
) -> None:
    tenant = await make_tenant()
    domain = await mail_domain(client, tenant, db, zone)
    incomplete = {**rfc2136(knot_primary), "settings": {"host": "127.0.0.1"}}
    bad = await client.post("/api/v1/dns-providers", json=incomplete, headers=tenant.headers)
    assert bad.status_code == 422
    provider = (
        await client.post(
            "/api/v1/dns-providers", json=rfc2136(knot_primary), headers=tenant.headers
        )
    ).json()
    assert "secret" not in provider
    stored = await vault.get(f"dns/{tenant.id}/{provider['id']}")
    assert stored == {"key_secret": knot_primary.key.secret}

    base = f"/api/v1/domains/{domain['id']}/dns"
    outside = await client.put(
        base, json={"provider_id": provider["id"], "zone": "other.test"}, headers=tenant.headers
    )
    assert outside.status_code == 422 and outside.json()["errors"][0]["field"] == "body.zone"
    settings = {"provider_id": provider["id"], "dmarc_rua": [f"dmarc@{zone}"]}
    put = await client.put(base, json=settings, headers=tenant.headers)
    assert put.status_code == 200, put.text
    purposes = {r["purpose"] for r in put.json()["records"]}
    assert {"mx", "spf", "dmarc", "mail-host", "caa"} <= purposes
    assert any(p.startswith("dkim:") for p in purposes)

    shown = (await client.get(base, headers=tenant.headers)).json()
    assert {r["status"] for r in shown["records"]} == {"missing"}
    serial = knot_primary.serial(f"{zone}.")
    dry = (
        await client.post(f"{base}/apply", params={"dry_run": "true"}, headers=tenant.headers)
    ).json()
    assert dry["applied"] is False and {c["action"] for c in dry["changes"]} == {"create"}
    assert knot_primary.serial(f"{zone}.") == serial
    applied = (await client.post(f"{base}/apply", headers=tenant.headers)).json()
    assert applied["applied"] is True and len(applied["changes"]) == len(dry["changes"])
    shown = (await client.get(base, headers=tenant.headers)).json()
    assert {r["status"] for r in shown["records"]} == {"published"}, shown
    assert knot_primary.query(f"_dmarc.{zone}", "TXT").texts == [
        f"v=DMARC1; p=none; rua=mailto:dmarc@{zone}; adkim=r; aspf=r"
    ]
    again = (await client.post(f"{base}/apply", headers=tenant.headers)).json()
    assert again["changes"] == []

    # Troubleshooting asks the configured resolvers (here: Knot itself).
    original = app.state.settings
    app.state.settings = original.model_copy(
        update={"dns_resolvers": f"{knot_primary.host}:{knot_primary.port}"}
    )
    try:
        diagnosis = (await client.get(f"{base}/troubleshoot", headers=tenant.headers)).json()
        checked = (await client.post(f"{base}/check", headers=tenant.headers)).json()
        async with client.stream(
            "POST", f"{base}/check", headers={**tenant.headers, "Accept": "text/event-stream"}
        ) as stream:
            events = [
                line
                for line in [x async for x in stream.aiter_lines()]
                if line.startswith("event: ")
            ]
        history = (await client.get(f"{base}/checks", headers=tenant.headers)).json()["items"]
    finally:
        app.state.settings = original
    assert checked["propagated"] is True, checked["report"]
    statuses = {r["status"] for r in checked["report"]["records"]}
    assert statuses == {"matching"}
    assert events[-1] == "event: report" and events.count("event: result") >= len(shown["records"])
    assert [c["propagated"] for c in history] == [True, True]
    critical = {f["code"]: f["fix"] for f in diagnosis["findings"] if f["severity"] == "critical"}
    assert critical == {"ptr.missing": f"30.0.18.198.in-addr.arpa. PTR mx1.{zone}."}, diagnosis
    assert diagnosis["state"] == "failing" and diagnosis["ok"] is False
    assert diagnosis["spf"]["valid"] is True and diagnosis["dmarc"]["valid"] is True

    busy = await client.delete(f"/api/v1/dns-providers/{provider['id']}", headers=tenant.headers)
    assert busy.status_code == 409
    gone = await client.delete(f"/api/v1/domains/{domain['id']}", headers=tenant.headers)
    assert gone.status_code == 204
    assert knot_primary.query(f"_dmarc.{zone}", "TXT").rcode == "NXDOMAIN"
    assert knot_primary.query(f"www.{zone}", "A").values == ["127.0.0.10"]  # theirs stays
    freed = await client.delete(f"/api/v1/dns-providers/{provider['id']}", headers=tenant.headers)
    assert freed.status_code == 204
    assert await vault.get(f"dns/{tenant.id}/{provider['id']}") is None


async def test_a_wrong_tsig_key_is_a_clear_error_and_changes_nothing(
    client: httpx.AsyncClient,
    make_tenant: MakeTenant,
    db: Database,
    knot_primary: KnotServer,
    zone: str,
) -> None:
    tenant = await make_tenant()
    domain = await mail_domain(client, tenant, db, zone)
    wrong = "d3JvbmctdHNpZy1zZWNyZXQtd3Jvbmctd3Jvbmc="
    provider = (
        await client.post(
            "/api/v1/dns-providers", json=rfc2136(knot_primary, wrong), headers=tenant.headers
        )
    ).json()
    base = f"/api/v1/domains/{domain['id']}/dns"
    await client.put(base, json={"provider_id": provider["id"]}, headers=tenant.headers)
    serial = knot_primary.serial(f"{zone}.")
    refused = await client.post(f"{base}/apply", headers=tenant.headers)
    assert refused.status_code == 502 and "TSIG" in refused.json()["detail"]
    assert knot_primary.serial(f"{zone}.") == serial
    other = await make_tenant()
    foreign = await client.put(base, json={"provider_id": provider["id"]}, headers=other.headers)
    assert foreign.status_code == 404


async def test_dmarc_steps_up_on_its_schedule_and_is_published(
    client: httpx.AsyncClient,
    make_tenant: MakeTenant,
    db: Database,
    vault: Vault,
    knot_primary: KnotServer,
    zone: str,
) -> None:
    tenant = await make_tenant()
    domain = await mail_domain(client, tenant, db, zone)
    provider = (
        await client.post(
            "/api/v1/dns-providers", json=rfc2136(knot_primary), headers=tenant.headers
        )
    ).json()
    base = f"/api/v1/domains/{domain['id']}/dns"
    await client.put(
        base, json={"provider_id": provider["id"], "dmarc_step_days": 14}, headers=tenant.headers
    )
    await client.post(f"{base}/apply", headers=tenant.headers)
    job = service.dmarc_progression_job(vault)
    async with db.session() as session:
        assert await job(session) == 0  # not yet: 14 days at p=none first
        row = await session.scalar(
            select(DomainDns).where(DomainDns.domain_id == uuid.UUID(domain["id"]))
        )
        assert row is not None
        row.dmarc_policy_since = datetime.now(UTC) - timedelta(days=15)
    async with db.session() as session:
        assert await job(session) == 1
    assert "p=quarantine" in knot_primary.query(f"_dmarc.{zone}", "TXT").texts[0]
    async with db.session() as session:
        assert await job(session) == 0  # the next step waits its own 14 days
    await client.delete(f"/api/v1/domains/{domain['id']}", headers=tenant.headers)


async def test_when_the_resolver_never_answers_check_and_troubleshoot_say_so(
    app: FastAPI, client: httpx.AsyncClient, make_tenant: MakeTenant, db: Database,
    knot_primary: KnotServer, zone: str, silent_resolver: tuple[str, int],
) -> None:  # fmt: skip
    tenant = await make_tenant()
    domain = await mail_domain(client, tenant, db, zone)
    unlisted = rfc2136(knot_primary)
    del unlisted["settings"]["nameservers"]  # the check looks the zone's NS up
    provider = (
        await client.post("/api/v1/dns-providers", json=unlisted, headers=tenant.headers)
    ).json()
    base = f"/api/v1/domains/{domain['id']}/dns"
    put = await client.put(base, json={"provider_id": provider["id"]}, headers=tenant.headers)
    assert put.status_code == 200, put.text
    original = app.state.settings
    app.state.settings = original.model_copy(update={
        "dns_resolvers": f"{silent_resolver[0]}:{silent_resolver[1]}",
        "dns_lookup_timeout_seconds": 0.3,
    })  # fmt: skip
    try:
        checked = await client.post(f"{base}/check", headers=tenant.headers)
        diagnosis = (await client.get(f"{base}/troubleshoot", headers=tenant.headers)).json()
    finally:
        app.state.settings = original
    # The zone's nameservers could not be looked up: the check could not run (not bad input).
    assert checked.status_code == 503, checked.text
    assert "could not be looked up" in checked.json()["detail"]
    assert diagnosis["state"] == "unknown" and diagnosis["ok"] is False, diagnosis
    assert {f["state"] for f in diagnosis["findings"]} == {"unknown"}
