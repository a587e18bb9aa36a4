"""The mail-stats routes on both databases: per day and per sender domain (an address) or
source address (a mail domain), bounce rates, date validation; another tenant: 404."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx

from control_plane.db.base import utcnow
from control_plane.db.engine import Database
from control_plane.mail.models import MailDomain
from control_plane.mailstats.models import MailCount
from tests.conftest import MakeTenant
from tests.ips.addresses import fresh_addresses
from tests.ips.test_routes import a_server, field_of, register


async def test_address_and_domain_figures_per_day(
    client: httpx.AsyncClient,
    make_tenant: MakeTenant,
    db: Database,
    admin_headers: dict[str, str],
) -> None:
    tenant, other = await make_tenant(), await make_tenant()
    server_id = await a_server(client, tenant)
    main, extra = fresh_addresses(2)
    await register(client, tenant, server_id, main)
    await register(client, tenant, server_id, extra)
    today = utcnow().date()
    yesterday = today - timedelta(days=1)
    domain_name = f"d{uuid.uuid4().hex[:10]}.example"
    figures = [
        (yesterday, main, domain_name, 90, 3, 10),
        (today, main, domain_name, 20, 1, 0),
        (today, main, "<>", 2, 0, 0),
        (today, extra, domain_name, 5, 0, 5),
        (today - timedelta(days=60), main, domain_name, 1, 0, 0),  # outside the default range
    ]
    async with db.session() as session:
        domain = MailDomain(
            tenant_id=uuid.UUID(tenant.id), server_id=uuid.UUID(server_id), name=domain_name
        )
        session.add(domain)
        session.add_all(
            MailCount(
                tenant_id=uuid.UUID(tenant.id),
                server_id=uuid.UUID(server_id),
                day=day,
                source_ip=ip,
                sender_domain=sender,
                sent=sent,
                deferred=deferred,
                bounced=bounced,
            )
            for day, ip, sender, sent, deferred, bounced in figures
        )
        await session.flush()
        domain_id = domain.id

    response = await client.get(f"/api/v1/ips/{main}/mail-stats", headers=tenant.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["totals"] == {"sent": 112, "deferred": 4, "bounced": 10, "bounce_rate": 10 / 122}
    assert body["reporting"]["state"] == "never"  # rows put here, no agent ever reported
    assert [d["day"] for d in body["days"]] == [yesterday.isoformat(), today.isoformat()]
    first, second = body["days"]
    assert (first["sent"], first["bounced"], first["bounce_rate"]) == (90, 10, 0.1)
    assert [(p["sender_domain"], p["sent"]) for p in second["by_sender_domain"]] == [
        ("<>", 2),
        (domain_name, 20),
    ]
    assert second["bounce_rate"] == 0.0

    since = (today - timedelta(days=90)).isoformat()
    response = await client.get(
        f"/api/v1/domains/{domain_id}/mail-stats",
        params={"from": since, "to": today.isoformat()},
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["domain"] == domain_name and len(body["days"]) == 3
    last = body["days"][-1]
    assert (last["sent"], last["bounced"]) == (25, 5)
    assert [(p["source_ip"], p["bounced"]) for p in last["by_source_ip"]] == sorted(
        [(main, 0), (extra, 5)]
    )
    quiet = await client.get(
        f"/api/v1/ips/{extra}/mail-stats",
        params={"to": yesterday.isoformat()},
        headers=tenant.headers,
    )
    assert quiet.json()["days"] == [] and quiet.json()["totals"]["bounce_rate"] is None

    # Another tenant sees neither; an admin sees both.
    for path in (f"/api/v1/ips/{main}/mail-stats", f"/api/v1/domains/{domain_id}/mail-stats"):
        assert (await client.get(path, headers=other.headers)).status_code == 404
        assert (await client.get(path, headers=admin_headers)).status_code == 200


async def test_bad_dates_name_the_field(client: httpx.AsyncClient, make_tenant: MakeTenant) -> None:
    tenant = await make_tenant()
    server_id = await a_server(client, tenant)
    (address,) = fresh_addresses(1)
    await register(client, tenant, server_id, address)
    path = f"/api/v1/ips/{address}/mail-stats"
    bad = await client.get(path, params={"from": "30/11/2026"}, headers=tenant.headers)
    assert field_of(bad) == "query.from"
    bad = await client.get(path, params={"to": "2026-02-30"}, headers=tenant.headers)
    assert field_of(bad) == "query.to"
    reversed_ = {"from": "2026-11-30", "to": "2026-11-01"}
    assert (
        field_of(await client.get(path, params=reversed_, headers=tenant.headers)) == "query.from"
    )
    too_long = {"from": "2020-01-01", "to": "2026-11-30"}
    assert field_of(await client.get(path, params=too_long, headers=tenant.headers)) == "query.from"
    early = await client.get(path, params={"to": "0001-01-02"}, headers=tenant.headers)
    assert early.status_code == 200 and early.json()["first_day"] == "0001-01-01"
    unknown = await client.get(f"/api/v1/domains/{uuid.uuid4()}/mail-stats", headers=tenant.headers)
    assert unknown.status_code == 404
