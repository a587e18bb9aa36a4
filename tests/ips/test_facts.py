"""What others read from the inventory: DNS publishes its published addresses (A, SPF), and
the outbound check compares the observer's view with its sending address."""

from __future__ import annotations

import json
import uuid

import httpx
from sqlalchemy import select

from control_plane.commands.models import Command
from control_plane.db.base import utcnow
from control_plane.db.engine import Database
from control_plane.dns import service as dns_service
from control_plane.dns.models import DomainDns
from control_plane.health.models import HealthCheck
from control_plane.health.outbound import CHECK, probe_settled
from control_plane.ips import service
from control_plane.mail.models import MailDomain
from control_plane.servers.models import Server
from tests.conftest import MakeTenant
from tests.ips.addresses import fresh_addresses
from tests.support.rows import a_server_row, a_tenant


async def test_dns_publishes_the_inventorys_addresses(
    client: httpx.AsyncClient, make_tenant: MakeTenant, db: Database
) -> None:
    tenant = await make_tenant()
    zone = f"ips-{uuid.uuid4().hex[:8]}.test"
    created = await client.post(
        "/api/v1/servers",
        headers=tenant.headers,
        json={"name": f"mx-{uuid.uuid4().hex[:6]}", "mail_hostname": f"mx1.{zone}"},
    )
    main, extra = fresh_addresses(2)
    async with db.session() as session:
        server = await session.get(Server, uuid.UUID(created.json()["id"]))
        assert server is not None
        server.state, server.ipv4 = "ready", main
    domain = await client.post(
        "/api/v1/domains", json={"name": zone, "server_id": str(server.id)}, headers=tenant.headers
    )
    assert domain.status_code == 201, domain.text

    async def records() -> dict[str, tuple[str, ...]]:
        async with db.session() as session:
            row = DomainDns(domain_id=uuid.UUID(domain.json()["id"]), zone=zone)
            for name in ("dmarc_rua", "tls_rpt_rua", "spf_includes", "caa_issuers"):
                setattr(row, name, "")
            row.dmarc_policy, row.mta_sts_mode = "none", "none"
            mail_domain = await session.get(MailDomain, uuid.UUID(domain.json()["id"]))
            assert mail_domain is not None
            found = await dns_service.desired_records(session, mail_domain, row)
            return {r.purpose: r.values for r in found}

    before = await records()  # no rows yet: the server's address
    assert before["mail-host"] == (main,) and f"ip4:{main}" in before["spf"][0]
    now = utcnow()
    async with db.session() as session:
        row = await session.get(Server, server.id)
        assert row is not None
        _, second = await service.sync_server(session, row, [main, extra], now)
    assert (await records())["mail-host"] == (main,)  # a standby is not published
    async with db.session() as session:
        second = await service.get_live(session, extra)
        await service.set_dns_published(session, second, True, "control-plane", now)
    after = await records()
    assert sorted(after["mail-host"]) == sorted([main, extra])
    assert f"ip4:{main}" in after["spf"][0] and f"ip4:{extra}" in after["spf"][0]


async def test_outbound_compares_with_the_sending_address(db: Database) -> None:
    main, extra = fresh_addresses(2)
    tenant = await a_tenant(db, "ipo")
    server = await a_server_row(db, tenant, name="o", state="ready", ipv4=main)
    now = utcnow()
    async with db.session() as session:
        _, standby = await service.sync_server(session, server, [main, extra], now)
        sending = await service.get_live(session, main)
        await service.set_role(session, sending, "standby", "control-plane", now)
        standby = await service.get_live(session, extra)
        await service.set_role(session, standby, "sending", "control-plane", now)

    async def judged(seen: str) -> HealthCheck:
        async with db.session() as session:
            command = Command(
                tenant_id=server.tenant_id,
                server_id=server.id,
                idempotency_key=str(uuid.uuid4()),
                kind="smtp.probe_out",
                payload=json.dumps({"host": "127.0.0.1", "port": 2525}),
                state="succeeded",
                result=json.dumps({"observed_source": seen, "connected": True}),
                timeout_seconds=5,
                finished_at=utcnow(),
            )
            session.add(command)
            await session.flush()
            await probe_settled(session, command)
        async with db.session() as session:
            check = await session.scalar(
                select(HealthCheck).where(
                    HealthCheck.server_id == server.id, HealthCheck.check == CHECK
                )
            )
            assert check is not None
            return check

    assert (await judged(extra)).threshold == extra
    assert (await judged(main)).threshold == extra  # from the old address: not the sending one
