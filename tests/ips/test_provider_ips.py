"""Adding and removing addresses through a provider (the Hostwinds contract double): the
unverified ``add_ip`` stays refused until its setting is on; removal goes through
``delete_ip``; the rows follow the provider's list."""

from __future__ import annotations

import ipaddress
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import pytest_asyncio

from control_plane.api.app import create_app
from control_plane.db.engine import Database
from control_plane.gateway.hub import AgentHub
from control_plane.provisioning.registry import HOSTWINDS_SECRET, ProviderRegistry
from control_plane.servers.models import Server
from control_plane.settings import Settings
from control_plane.vault.client import Vault
from control_plane.vault.pki import AgentPki
from tests.conftest import MakeTenant
from tests.fakes.hostwinds import FakeInstance, HostwindsDouble, hostwinds_double

API_KEY = "hwk-ips-0123456789abcdef0123456789abcdef"


@pytest.fixture
def api() -> Iterator[HostwindsDouble]:
    with hostwinds_double(api_key=API_KEY, create_delay=0.0) as double:
        yield double


async def plane(
    settings: Settings, db: Database, vault: Vault, unverified: bool
) -> httpx.AsyncClient:
    allowed = settings.model_copy(update={"hostwinds_unverified_actions": unverified})
    app = create_app(
        allowed,
        database=db,
        vault=vault,
        hub=AgentHub(),
        providers=ProviderRegistry(allowed, vault),
        wake_workflow=lambda: None,
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://mf.test")


@pytest_asyncio.fixture
async def configured(api: HostwindsDouble, vault: Vault) -> AsyncIterator[HostwindsDouble]:
    await vault.put(
        HOSTWINDS_SECRET,
        {"api_key": API_KEY, "template": "debian-12", "regions": "1=Seattle", "base_url": api.url},
    )
    try:
        yield api
    finally:
        await vault.delete(HOSTWINDS_SECRET)


def an_instance(api: HostwindsDouble) -> tuple[str, str]:
    """An instance already running at the double (ordering one is provisioning's test)."""
    main = str(ipaddress.IPv4Address("198.51.100.200") + len(api.instances))
    serviceid = 700_000 + len(api.instances)
    api.instances[serviceid] = FakeInstance(
        serviceid=serviceid, name=f"mf-{uuid.uuid4()}", location_id=1, rid=12,
        template="debian-12", keys=[], user_data="", created_at=time.monotonic() - 3600,
        ips=[main], ipv6="2001:db8::77", private_ip="10.0.0.7",
    )  # fmt: skip
    return str(serviceid), main


@pytest.mark.postgres_only
async def test_hostwinds_add_is_gated_and_remove_follows_the_provider(
    configured: HostwindsDouble,
    client: httpx.AsyncClient,
    make_tenant: MakeTenant,
    settings: Settings,
    db: Database,
    vault: Vault,
    pki: AgentPki,
) -> None:
    tenant = await make_tenant()
    instance_id, main = an_instance(configured)
    async with db.session() as session:
        server = Server(
            tenant_id=uuid.UUID(tenant.id),
            name="hw",
            provider="hostwinds",
            state="ready",
            instance_id=instance_id,
            ipv4=main,
        )
        session.add(server)
        await session.flush()
        server_id = str(server.id)
    url = f"/api/v1/servers/{server_id}/ips"
    async with await plane(settings, db, vault, unverified=False) as gated:
        refused = await gated.post(url, headers=tenant.headers)
        assert refused.status_code == 409, refused.text
        assert "MAILFLEET_HOSTWINDS_UNVERIFIED_ACTIONS" in refused.json()["detail"]
        assert configured.calls_of("add_ip") == []
    async with await plane(settings, db, vault, unverified=True) as allowed:
        named = await allowed.post(url, json={"address": "192.0.2.1"}, headers=tenant.headers)
        assert named.status_code == 422 and named.json()["errors"][0]["field"] == "body.address"
        added = await allowed.post(url, headers=tenant.headers)
        assert added.status_code == 201, added.text
        extra = added.json()["address"]
        assert extra != main and added.json()["role"] == "standby"
        listed = await allowed.get(
            "/api/v1/ips", params={"server_id": server_id}, headers=tenant.headers
        )
        rows = {ip["address"]: ip for ip in listed.json()["items"]}
        assert set(rows) == {main, extra}  # IPv4 only: the instance's IPv6 has no row
        assert rows[main]["role"] == "sending" and rows[main]["is_main"]

        kept = await allowed.delete(f"{url}/{main}", headers=tenant.headers)
        assert kept.status_code == 409
        removed = await allowed.delete(f"{url}/{extra}", headers=tenant.headers)
        assert removed.status_code == 204, removed.text
        assert len(configured.calls_of("delete_ip")) == 1
        assert extra not in configured.instances[int(instance_id)].ips
        gone = await allowed.get(f"/api/v1/ips/{extra}", headers=tenant.headers)
        assert gone.status_code == 404
