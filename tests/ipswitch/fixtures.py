"""A switchable server for the workflow tests: a Hostwinds (contract double) instance with two
addresses, a mail domain whose zone a real Knot serves through the rfc2136 DNS provider, IP
inventory rows, and an agent stand-in that answers the server's commands by settling their
rows the way the gateway does when a real agent reports (``commands.record_result``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import select

from control_plane.commands import service as commands
from control_plane.commands.models import Command
from control_plane.db.base import utcnow
from control_plane.db.engine import Database
from control_plane.ips import service as ips
from control_plane.ips.models import IpAddress
from control_plane.servers.models import Server
from tests.conftest import TenantHandle
from tests.dns.test_dns_api import rfc2136
from tests.fakes.hostwinds import FakeInstance, HostwindsDouble
from tests.support.knot import KnotServer

IP1, IP2 = "198.51.100.21", "198.51.100.22"
OLD_PTR = "old-name.example.net"


@dataclass
class AgentStandIn:
    """What a VPS's agent would answer to the switch's commands; faults are switched on by
    the tests (``snat_fails``: nft refuses that address, ``restore_fails``: it refuses going
    back to no SNAT; ``seen``: the observer sees another address)."""

    db: Database
    server_id: uuid.UUID
    addresses: list[str] = field(default_factory=lambda: [IP1, IP2])
    snat: str | None = None
    snat_fails: str | None = None
    restore_fails: bool = False
    away: set[str] = field(default_factory=set)
    seen: str | None = None
    answered: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def answer(self, kind: str, payload: dict[str, Any]) -> tuple[str, dict[str, Any] | str]:
        self.answered.append((kind, payload))
        if kind == "network.snat.show":
            return "succeeded", {"to_ip": self.snat, "ports": [25], "addresses": self.addresses}
        if kind == "network.snat.set":
            wanted = payload["to_ip"]
            if (self.snat_fails and wanted == self.snat_fails) or (
                self.restore_fails and wanted is None
            ):
                return "failed", f"nft: {wanted} is not an address on this machine"
            previous, self.snat = self.snat, wanted
            return "succeeded", {"to_ip": wanted, "previous": previous, "ports": payload["ports"]}
        if kind == "smtp.probe_out":
            source = self.seen or self.snat or self.addresses[0]
            return "succeeded", {"connected": True, "observed_source": source, "banner": "220"}
        return "succeeded", {}

    async def run(self) -> None:
        """Take queued commands as the gateway delivers them (marked sent), answer as the agent
        reports; commands of a kind in ``away`` stay queued (the agent is away for them)."""
        while True:
            async with self.db.session() as session:
                taken = list(
                    await session.scalars(
                        select(Command)
                        .where(
                            Command.server_id == self.server_id,
                            Command.state == "queued",
                            Command.kind.not_in(self.away),
                        )
                        .order_by(Command.id)
                    )
                )
                for command in taken:
                    command.state, command.sent_at = "sent", utcnow()
            for command in taken:
                state, result = self.answer(command.kind, json.loads(command.payload))
                async with self.db.session() as session:
                    await commands.record_result(
                        session,
                        self.server_id,
                        command.id,
                        state,
                        json.dumps(result) if state == "succeeded" else None,
                        None if state == "succeeded" else str(result),
                    )
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def running(agent: AgentStandIn) -> AsyncIterator[AgentStandIn]:
    task = asyncio.create_task(agent.run())
    try:
        yield agent
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@dataclass
class Switchable:
    server_id: uuid.UUID
    serviceid: int
    domain_id: str
    provider_id: str
    host: str


async def switchable_server(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    db: Database,
    api: HostwindsDouble,
    knot: KnotServer,
    zone: str,
) -> Switchable:
    """A ready, enrolled server at Hostwinds with IP1 (sending, published) and IP2
    (standby, PTR ``OLD_PTR``); its domain's records are published in Knot."""
    host = f"mx1.{zone}"
    serviceid = 200_000 + len(api.instances)
    api.instances[serviceid] = FakeInstance(
        serviceid=serviceid, name=f"mf-{serviceid}", location_id=2, rid=12,
        template="debian-12", keys=[], user_data="", created_at=time.time() - 60,
        ips=[IP1, IP2], ipv6="2001:db8::1", private_ip="10.0.0.2", rdns={IP2: OLD_PTR},
    )  # fmt: skip
    made = await client.post(
        "/api/v1/servers",
        headers=tenant.headers,
        json={"name": f"mx-{uuid.uuid4().hex[:6]}", "mail_hostname": host},
    )
    assert made.status_code == 201, made.text
    server_id = uuid.UUID(made.json()["id"])
    async with db.session() as session:
        server = await session.get(Server, server_id)
        assert server is not None
        server.provider, server.instance_id, server.ipv4 = "hostwinds", str(serviceid), IP1
        server.state, server.agent_state = "ready", "enrolled"
        rows = await ips.sync_server(session, server, [IP1, IP2], utcnow())
        rows[1].ptr = OLD_PTR
    domain = await client.post(
        "/api/v1/domains", json={"name": zone, "server_id": str(server_id)}, headers=tenant.headers
    )
    assert domain.status_code == 201, domain.text
    provider = await client.post(
        "/api/v1/dns-providers", json=rfc2136(knot), headers=tenant.headers
    )
    assert provider.status_code == 201, provider.text
    base = f"/api/v1/domains/{domain.json()['id']}/dns"
    put = await client.put(
        base, json={"provider_id": provider.json()["id"]}, headers=tenant.headers
    )
    assert put.status_code == 200, put.text
    applied = await client.post(f"{base}/apply", headers=tenant.headers)
    assert applied.status_code == 200, applied.text
    return Switchable(server_id, serviceid, domain.json()["id"], provider.json()["id"], host)


async def ip_rows(db: Database, server_id: uuid.UUID) -> dict[str, IpAddress]:
    async with db.session() as session:
        return {row.address: row for row in await ips.live_ips(session, server_id)}
