"""A mail server for the server-page section tests, made through MailFleet's services: two
addresses, two domains whose records publish to a real Knot (one zone Knot serves, one it
refuses), DNSBL lists on the same Knot, and Hostwinds (the contract double) for resizing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from control_plane.db.base import utcnow
from control_plane.dns import service as dns
from control_plane.dns.schemas import DomainDnsIn, ProviderCreate
from control_plane.ips import service as ips
from control_plane.mail.schemas import DomainCreate
from control_plane.mail.service import create_domain
from control_plane.provisioning import registry
from control_plane.provisioning.registry import HOSTWINDS_SECRET
from control_plane.servers.models import Server
from control_plane.servers.schemas import ServerCreate
from control_plane.servers.service import create_server
from tests.fakes.hostwinds import hostwinds_double
from tests.resize.fixtures import API_KEY, PLANS, quick_driver
from tests.support.dnsbl import Listing, Zone, addresses, catalog
from tests.support.knot import KnotServer, run_knot_primary, zone_text
from tests.web.console import ConsoleServer

BL_ZONE, REFUSED_BL_ZONE = "bl-web.test", "bl-web-refused.test"
CURRENT_PLAN, BIGGER_PLAN = "12", "13"  # Unmanaged Linux 2 → 3: 17.99 → 34.99 USD


@dataclass(frozen=True)
class MailServer:
    tenant_id: uuid.UUID
    key: str
    server_id: uuid.UUID
    served: tuple[uuid.UUID, str]  # (domain id, name): its zone is on Knot, records applied
    refused: tuple[uuid.UUID, str]  # Knot refuses its zone: nothing can be read or asked
    sending: str  # clean on BL_ZONE
    listed: str  # the standby address, listed on BL_ZONE


@contextmanager
def section_world(console: ConsoleServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[MailServer]:
    """Knot, the Hostwinds double and the app's settings pointed at them, for one test."""
    served, refused = (f"web-{uuid.uuid4().hex[:8]}.test" for _ in range(2))
    sending, listed = addresses(2)
    bl = Zone(BL_ZONE, listed={listed: Listing("127.0.0.2", "seen on spam traps")})
    zones = {f"{served}.": zone_text(f"{served}."), f"{BL_ZONE}.": bl.text()}
    app = console.app
    original = app.state.settings
    # the driver with the test's times, whatever else the registry passes it
    monkeypatch.setattr(registry, "hostwinds_from_secret", lambda config, *_: quick_driver(config))
    with run_knot_primary(zones) as knot, hostwinds_double(api_key=API_KEY, plans=PLANS) as api:
        app.state.settings = original.model_copy(
            update={
                "dnsbl_lists": catalog(
                    {"zone": BL_ZONE, "name": "Web BL", "major": True, "weight": 30},
                    {"zone": REFUSED_BL_ZONE, "name": "Refusing BL", "weight": 10},
                ),
                "dnsbl_resolvers": f"{knot.host}:{knot.port}",
                "dnsbl_timeout_seconds": 0.5,
                "dns_lookup_timeout_seconds": 0.5,
            }
        )
        secret = {"api_key": API_KEY, "template": "debian-12", "regions": "2=Dallas",
                  "base_url": api.url}  # fmt: skip
        console.run(app.state.vault.ensure_kv_mount())
        console.run(app.state.vault.put(HOSTWINDS_SECRET, secret))
        try:
            tenant_id, key, _ = console.tenant("sections")
            made = _make(console, knot, tenant_id, served, refused, sending, listed)
            yield MailServer(tenant_id, key, *console.run(made))
        finally:
            console.run(app.state.vault.delete(HOSTWINDS_SECRET))
            app.state.settings = original


async def _make(
    console: ConsoleServer, knot: KnotServer, tenant_id: uuid.UUID, *names: str
) -> tuple[Any, ...]:
    """(server id, served domain, refused domain, sending address, listed address)."""
    served, refused, *ips_ = names
    app = console.app
    vault, now = app.state.vault, utcnow()
    async with console.db.tenant_session(tenant_id) as session:
        data = ServerCreate(name="mx-sections", mail_stack="mailu", mail_hostname=f"mx1.{served}")
        server = await session.get(Server, (await create_server(session, tenant_id, data)).id)
        assert server is not None
        server.provider, server.plan, server.instance_id = "hostwinds", CURRENT_PLAN, "300001"
        server.state, server.ipv4 = "ready", ips_[0]
        await ips.sync_server(session, server, list(ips_), now)
        provider = await dns.create_provider(
            session, vault, tenant_id, ProviderCreate(**rfc2136(knot))
        )
        domains = []
        for name in (served, refused):
            made = DomainCreate(name=name, server_id=server.id)
            domains.append(domain := await create_domain(session, vault, made))
            settings = DomainDnsIn(provider_id=provider.id)
            await dns.put_settings(session, domain, settings, app.state.settings.acme_caa_identity)
        await dns.apply(session, vault, domains[0])  # the served zone gets every record
        return (server.id, *((d.id, d.name) for d in domains), *ips_)


def rfc2136(knot: KnotServer) -> dict[str, Any]:
    """A DNS provider publishing to ``knot`` by RFC 2136, which is also the zone's only
    authoritative server (so "Test DNS" asks it, and only it)."""
    return {
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
