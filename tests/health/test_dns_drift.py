"""``dns.drift``: the records a real Knot server publishes against the desired ones, through
the DNS checker. As desired: ok; an MX changed behind MailFleet's back: failing, critical;
the nameserver silent: unknown, never ok."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from control_plane.db.engine import Database
from control_plane.health.results import Result
from control_plane.health.sweep import Checker
from control_plane.servers.models import Server
from control_plane.settings import Settings
from tests.conftest import MakeTenant, TenantHandle
from tests.health.fleet import checks_by_name, fast_settings
from tests.support.knot import KnotServer, zone_text


@pytest.fixture
def zone() -> str:
    return f"drift-{uuid.uuid4().hex[:8]}.test"


@pytest.fixture
def knot_zones(zone: str) -> dict[str, str]:
    return {f"{zone}.": zone_text(f"{zone}.")}


async def published_domain(
    client: httpx.AsyncClient, tenant: TenantHandle, db: Database, zone: str, knot: KnotServer
) -> str:
    """A ready server with a mail domain whose records MailFleet has applied to Knot."""
    created = await client.post(
        "/api/v1/servers",
        headers=tenant.headers,
        json={"name": f"mx-{uuid.uuid4().hex[:6]}", "mail_hostname": f"mx1.{zone}"},
    )
    assert created.status_code == 201, created.text
    server_id = str(created.json()["id"])
    async with db.session() as session:
        server = await session.get(Server, uuid.UUID(server_id))
        assert server is not None
        server.state, server.ipv4 = "ready", "127.0.0.1"
    domain = await client.post(
        "/api/v1/domains", json={"name": zone, "server_id": server_id}, headers=tenant.headers
    )
    assert domain.status_code == 201, domain.text
    provider: dict[str, Any] = {
        "name": f"knot-{uuid.uuid4().hex[:4]}",
        "kind": "rfc2136",
        "settings": {
            "host": knot.host,
            "port": knot.port,
            "key_name": knot.key.name,
            "nameservers": [f"{knot.host}:{knot.port}"],
        },
        "secret": {"key_secret": knot.key.secret},
    }
    made = await client.post("/api/v1/dns-providers", json=provider, headers=tenant.headers)
    assert made.status_code == 201, made.text
    base = f"/api/v1/domains/{domain.json()['id']}/dns"
    put = await client.put(base, json={"provider_id": made.json()["id"]}, headers=tenant.headers)
    assert put.status_code == 200, put.text
    applied = await client.post(f"{base}/apply", headers=tenant.headers)
    assert applied.status_code == 200 and applied.json()["applied"], applied.text
    return server_id


def drift(results: list[Result]) -> Result:
    return next(r for r in results if r.check == "dns.drift")


async def test_dns_drift_against_a_real_nameserver(
    client: httpx.AsyncClient,
    make_tenant: MakeTenant,
    db: Database,
    settings: Settings,
    knot_primary: KnotServer,
    zone: str,
) -> None:
    tenant = await make_tenant()
    server_id = uuid.UUID(await published_domain(client, tenant, db, zone, knot_primary))
    config = fast_settings(settings, dns_lookup_timeout_seconds=0.5)
    checker = Checker(db, config)

    found = drift(await checker.run_now(server_id))
    assert (found.state, found.severity) == ("ok", "info"), found
    assert found.observed and found.observed.endswith("record sets as desired")

    knot_primary.set_records(f"{zone}.", f"{zone}.", "MX", ["10 mx.elsewhere.test."])
    found = drift(await checker.run_now(server_id))
    assert (found.state, found.severity) == ("failing", "critical"), found
    assert f"MX {zone} is different" in found.detail
    row = (await checks_by_name(db, server_id))["dns.drift"]
    assert row.pending_state == "failing"  # counts after the flap guard's re-check

    knot_primary.stop()
    found = drift(await checker.run_now(server_id))
    assert found.state == "unknown", found
