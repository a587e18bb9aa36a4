"""The provisioning steps ``dns`` and ``tls`` against real Knot and Pebble: a server's domains
are published at its address, then its mail host gets a certificate."""

from __future__ import annotations

import socket
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from control_plane.db.engine import Database
from control_plane.dns.models import DnsProvider, DomainDns
from control_plane.gateway.hub import AgentHub
from control_plane.provisioning.registry import ProviderRegistry
from control_plane.provisioning.workflow import Advance, Deleted, Retry, Workflow
from control_plane.servers.models import Server
from control_plane.settings import Settings
from control_plane.tls.models import Certificate
from control_plane.vault.client import Vault, secret_path
from control_plane.vault.pki import AgentPki
from tests.conftest import MakeTenant
from tests.support.knot import KnotServer
from tests.support.pebble import Pebble
from tests.support.ports import free_port
from tests.tls.test_acme import knot_zones, mail_server, publish_zone
from tests.tls.test_acme import zone as zone

__all__ = ["knot_zones", "zone"]


async def test_dns_then_tls_steps_publish_and_certify_at_the_servers_address(
    client: httpx.AsyncClient, make_tenant: MakeTenant, db: Database, vault: Vault,
    pki: AgentPki, settings: Settings, knot_primary: KnotServer, pebble: Pebble, zone: str,
) -> None:  # fmt: skip
    tenant = await make_tenant()
    host = f"mx1.{zone}"
    server_id = await mail_server(client, tenant, db, host)
    await publish_zone(client, tenant, knot_primary, server_id, zone)
    acme = settings.model_copy(update={"acme_directory_url": pebble.directory_url,
                                       "acme_ca_file": Path(pebble.ca_bundle)})  # fmt: skip
    workflow = Workflow(acme, db, vault, pki, AgentHub(), ProviderRegistry(acme, vault))

    async def run(state: str) -> object:
        async with db.session() as session:
            server = await session.get(Server, uuid.UUID(server_id))
            assert server is not None
            server.state = state
        assert server is not None
        return await workflow.step(server)

    async def step(state: str) -> Advance:
        outcome = await run(state)
        assert isinstance(outcome, Advance), outcome
        return outcome

    published = await step("dns")
    assert published.to == "tls" and "1 domain" in published.message
    assert knot_primary.query(host, "A").values == ["198.18.0.40"]
    assert knot_primary.query(zone, "MX").values == [f"10 {host}."]
    certified = await step("tls")
    assert certified.to == "ready" and host in certified.message
    async with db.session() as session:
        cert = await session.scalar(
            select(Certificate).where(Certificate.server_id == uuid.UUID(server_id))
        )
        assert cert is not None and cert.serial and cert.command_id

    # Deprovisioning takes MailFleet's records out of the zone before the server goes.
    assert isinstance(await run("deprovisioning"), Deleted)
    assert knot_primary.query(zone, "MX").values == []
    assert knot_primary.query(host, "A").values == []
    assert await vault.get(f"vps/{tenant.id}/{server_id}/tls") is None


async def test_a_zone_whose_nameservers_cannot_be_found_is_retried_with_the_reason(
    client: httpx.AsyncClient, make_tenant: MakeTenant, db: Database, vault: Vault,
    pki: AgentPki, settings: Settings, pebble: Pebble, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """A provider that lists no nameservers: the zone's NS are looked up, and a resolver that
    never answers makes the step retry with its words (and the certificate's failing run
    begin), not crash."""
    # The provider's API is never to be reached: any HTTPS but Pebble's goes to a closed port.
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    tenant = await make_tenant()
    zone = f"lost-{uuid.uuid4().hex[:8]}.test"
    server_id = await mail_server(client, tenant, db, f"mx1.{zone}")
    domain = await client.post(
        "/api/v1/domains", json={"name": zone, "server_id": server_id}, headers=tenant.headers
    )
    async with db.session() as session:
        provider = DnsProvider(tenant_id=uuid.UUID(tenant.id), name="cf", kind="cloudflare")
        session.add(provider)
        await session.flush()
        session.add(DomainDns(tenant_id=provider.tenant_id, domain_id=uuid.UUID(
            domain.json()["id"]), provider_id=provider.id, zone=zone))  # fmt: skip
        server = await session.get(Server, uuid.UUID(server_id))
        assert server is not None
        server.state = "tls"
    await vault.put(secret_path("dns", tenant.id, provider.id), {"token": "never-used"})
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        acme = settings.model_copy(update={
            "acme_directory_url": pebble.directory_url, "acme_ca_file": Path(pebble.ca_bundle),
            "dns_resolvers": f"127.0.0.1:{silent.getsockname()[1]}",
            "dns_lookup_timeout_seconds": 0.3, "acme_retry_pause_seconds": 0.1,
        })  # fmt: skip
        workflow = Workflow(acme, db, vault, pki, AgentHub(), ProviderRegistry(acme, vault))
        outcome = await workflow.step(server)
    assert isinstance(outcome, Retry), outcome
    assert f"the nameservers of {zone} could not be found" in outcome.message, outcome.message
    async with db.session() as session:
        cert = await session.scalar(
            select(Certificate).where(Certificate.server_id == uuid.UUID(server_id))
        )
        assert cert is not None and cert.failures == 1 and cert.renewing_until is None
        assert cert.failing_since is not None and cert.failing_since == cert.last_failure_at
    await vault.delete(secret_path("dns", tenant.id, provider.id))
