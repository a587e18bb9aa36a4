"""The provisioning workflow in-process: API + runner against the Hostwinds contract double.

Hostwinds gets documented fields only (no user data) and the agent is to be installed over
SSH; the double's "VPSs" are loopback addresses where no sshd listens, so these tests follow
orders up to ``installing_agent`` and through every failure path; the local-provider tests
(tests/e2e, tests/provisioning/test_ssh_bootstrap.py) follow them to ``ready``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio

from control_plane.api.app import create_app
from control_plane.db.base import utcnow
from control_plane.db.engine import Database
from control_plane.gateway.hub import AgentHub
from control_plane.provisioning.providers.hostwinds import HostwindsProvider
from control_plane.provisioning.registry import HOSTWINDS_SECRET, ProviderRegistry
from control_plane.provisioning.runner import ProvisioningRunner
from control_plane.provisioning.ssh import admin_key_path
from control_plane.provisioning.workflow import Workflow
from control_plane.servers.models import Server
from control_plane.settings import Settings
from control_plane.vault.client import Vault
from control_plane.vault.pki import AgentPki
from tests.conftest import MakeTenant, TenantHandle
from tests.control_plane.costs.ledger import spans_of
from tests.fakes.hostwinds import HostwindsDouble, hostwinds_double

API_KEY = "hwk-0123456789abcdef0123456789abcdef"
NO_SSHD = "127.0.51.0/24"  # loopback: connecting to port 22 there is refused
ORDER = {"name": "mx1", "provider": "hostwinds", "region": "2", "plan": "12", "mail_stack": "none"}


@pytest.fixture
def api() -> Iterator[HostwindsDouble]:
    with hostwinds_double(api_key=API_KEY, create_delay=0.3, addresses=NO_SSHD) as double:
        yield double


@pytest_asyncio.fixture
async def plane(
    api: HostwindsDouble, settings: Settings, db: Database, vault: Vault, pki: AgentPki
) -> AsyncIterator[httpx.AsyncClient]:
    """The API with a provisioning runner beside it, and Hostwinds configured in Vault."""
    await vault.put(
        HOSTWINDS_SECRET,
        {"api_key": API_KEY, "template": "debian-12", "regions": "1=Seattle,2=Dallas",
         "base_url": api.url},
    )  # fmt: skip
    fast = settings.model_copy(
        update={
            "provision_poll_seconds": 0.1,
            "provision_lease_seconds": 2.0,
            "provision_enroll_timeout_seconds": 1.5,
            "provision_ssh_connect_seconds": 1.0,
        }
    )
    hub = AgentHub()
    providers = ProviderRegistry(fast, vault)
    runner = ProvisioningRunner(fast, db, Workflow(fast, db, vault, pki, hub, providers))
    task = asyncio.create_task(runner.run())
    app = create_app(
        fast, database=db, vault=vault, hub=hub, providers=providers, wake_workflow=runner.wake
    )
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://mailfleet.test"
        ) as client:
            yield client
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await providers.aclose()
        await vault.delete(HOSTWINDS_SECRET)


async def settle(
    client: httpx.AsyncClient, tenant: TenantHandle, server_id: str, state: str, within: float = 20
) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        response = await client.get(f"/api/v1/servers/{server_id}", headers=tenant.headers)
        assert response.status_code == 200, response.text
        server: dict[str, Any] = response.json()
        if server["state"] == state:
            return server
        assert time.monotonic() < deadline, f"still {server['state']}: {server}"
        await asyncio.sleep(0.05)


async def gone(client: httpx.AsyncClient, tenant: TenantHandle, server_id: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        response = await client.get(f"/api/v1/servers/{server_id}", headers=tenant.headers)
        if response.status_code == 404:
            return
        assert time.monotonic() < deadline, response.json()
        await asyncio.sleep(0.05)


async def history(client: httpx.AsyncClient, tenant: TenantHandle, server_id: str) -> list[Any]:
    response = await client.get(f"/api/v1/servers/{server_id}/events", headers=tenant.headers)
    assert response.status_code == 200, response.text
    items: list[Any] = response.json()["items"]
    return items


async def test_an_order_is_rented_booted_and_fails_installing_its_agent_without_sshd(
    plane: httpx.AsyncClient,
    make_tenant: MakeTenant,
    api: HostwindsDouble,
    vault: Vault,
    db: Database,
) -> None:
    tenant = await make_tenant()
    response = await plane.post("/api/v1/servers", json=ORDER, headers=tenant.headers)
    assert response.status_code == 201, response.text
    server_id = response.json()["id"]
    failed = await settle(plane, tenant, server_id, "failed")
    # The agent is installed over SSH (Hostwinds' bootstrap): no sshd, so that step fails.
    assert failed["failed_step"] == "installing_agent"
    reason = failed["failure_reason"]
    assert reason.startswith("could not log in over SSH within 1 s ("), reason
    assert reason.endswith(f" attempts): root@{failed['ipv4']}:22: Connection refused"), reason
    assert failed["ipv4"].startswith("127.0.51.")

    assert len(api.calls_of("add_instance")) == 1
    (instance,) = api.instances.values()
    assert instance.name == f"mf-{server_id}"
    assert (instance.rid, instance.location_id) == (12, 2)
    # Documented fields only: no user data (so nothing boots an agent here), and the key
    # Hostwinds issued under the instance's name, its private half kept in the server's path.
    assert instance.user_data == "" and instance.keys == [instance.name]
    stored = await vault.get(admin_key_path(uuid.UUID(tenant.id), uuid.UUID(server_id)))
    assert stored is not None and stored["public_key"] == failed["ssh_public_key"]
    assert stored["provider_key"] == instance.name
    assert stored["public_key"].startswith(api.ssh_keys[instance.name] + " ")
    assert stored["private_key"].startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    events = await history(plane, tenant, server_id)
    states = [e["state"] for e in events]
    assert (
        states[:4] == ["requested", "creating", "booting", "installing_agent"]
        and states[-1] == "failed"
    )
    # Billing starts when the instance exists: its plan's span opened as its id was recorded.
    (span,) = await spans_of(db, server_id)
    assert (span.resource, span.item, span.ended_at) == ("server", "12", None)
    ordered = next(
        e for e in events if e["message"].startswith(f"instance {instance.serviceid} ordered")
    )
    gap = datetime.fromisoformat(ordered["at"]) - span.started_at
    assert timedelta(0) <= gap < timedelta(seconds=1), (ordered, span.started_at)

    response = await plane.delete(f"/api/v1/servers/{server_id}", headers=tenant.headers)
    assert response.status_code == 202 and response.json()["state"] == "deprovisioning"
    deadline = time.monotonic() + 20
    while (
        await plane.get(f"/api/v1/servers/{server_id}", headers=tenant.headers)
    ).status_code != 404:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    assert api.instances == {} and api.ssh_keys == {}
    assert await vault.get(admin_key_path(uuid.UUID(tenant.id), uuid.UUID(server_id))) is None
    (closed,) = await spans_of(db, server_id)  # the row is gone; the ledger stays, closed
    assert closed.id == span.id and closed.ended_at is not None
    assert span.started_at < closed.ended_at <= utcnow()


async def test_a_provider_error_fails_the_step_with_its_message_and_retry_resumes(
    plane: httpx.AsyncClient, make_tenant: MakeTenant, api: HostwindsDouble
) -> None:
    tenant = await make_tenant()
    api.fail_next(1, "error_body", actions=["add_instance"], message="Insufficient account credit.")
    response = await plane.post("/api/v1/servers", json=ORDER, headers=tenant.headers)
    server_id = response.json()["id"]
    failed = await settle(plane, tenant, server_id, "failed")
    assert failed["failed_step"] == "creating"
    assert failed["failure_reason"] == "Hostwinds add_instance: Insufficient account credit."
    assert api.instances == {}
    events = await history(plane, tenant, server_id)
    assert events[-1]["kind"] == "failed" and "Insufficient" in events[-1]["message"]

    retried = await plane.post(f"/api/v1/servers/{server_id}/retry", headers=tenant.headers)
    assert retried.status_code == 200 and retried.json()["state"] == "creating"
    await settle(plane, tenant, server_id, "installing_agent")
    assert len(api.instances) == 1
    again = await plane.post(f"/api/v1/servers/{server_id}/retry", headers=tenant.headers)
    assert again.status_code == 409  # only failed servers are retried
    await plane.delete(f"/api/v1/servers/{server_id}", headers=tenant.headers)
    await gone(plane, tenant, server_id)
    assert api.instances == {}


async def test_cancelling_while_the_order_is_under_way_leaves_no_instance(
    plane: httpx.AsyncClient, make_tenant: MakeTenant, api: HostwindsDouble
) -> None:
    tenant = await make_tenant()
    api.fail_next(1, "hang_after_action", actions=["add_instance"], hang=1.0)
    response = await plane.post("/api/v1/servers", json=ORDER, headers=tenant.headers)
    server_id = response.json()["id"]
    deadline = time.monotonic() + 10
    while not api.calls_of("add_instance"):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    response = await plane.delete(f"/api/v1/servers/{server_id}", headers=tenant.headers)
    assert response.status_code == 202
    await gone(plane, tenant, server_id)
    assert api.instances == {}  # ordered, then found by its name and terminated


async def test_runners_never_claim_the_same_server_and_take_over_stale_leases(
    db: Database, settings: Settings, vault: Vault, pki: AgentPki, make_tenant: MakeTenant
) -> None:
    tenant = await make_tenant()
    ours: set[uuid.UUID] = set()
    async with db.session() as session:
        for n in range(8):
            server = Server(
                tenant_id=uuid.UUID(tenant.id), name=f"claim-{n}", provider="manual",
                state="enrolling", next_step_at=utcnow() - timedelta(seconds=1),
            )  # fmt: skip
            session.add(server)
            await session.flush()
            ours.add(server.id)
    fast = settings.model_copy(update={"provision_lease_seconds": 1.0})
    providers = ProviderRegistry(fast, vault)

    def runner() -> ProvisioningRunner:
        workflow = Workflow(fast, db, vault, pki, AgentHub(), providers)
        return ProvisioningRunner(fast, db, workflow)

    first, second = runner(), runner()
    claims = await asyncio.gather(first.claim(10_000), second.claim(10_000))
    a, b = ({s.id for s in claimed} & ours for claimed in claims)
    assert not a & b and a | b == ours
    for runner_, claimed in zip((first, second), claims, strict=True):
        assert {s.lease_owner for s in claimed} <= {runner_.owner}

    third = runner()
    assert not {s.id for s in await third.claim(10_000)} & ours  # leases still held
    await asyncio.sleep(1.2)  # the first two "died": their leases lapse
    assert {s.id for s in await third.claim(10_000)} >= ours


async def test_user_data_goes_to_hostwinds_only_with_its_setting(
    settings: Settings, vault: Vault
) -> None:
    """``add_instance`` taking user data is unverified: off unless MAILFLEET_HOSTWINDS_USER_DATA
    (or the account's ``bootstrap=cloud-init``); otherwise the agent is installed over SSH."""
    account = {"api_key": API_KEY, "template": "debian-12"}
    try:
        for flag, bootstrap, expected in (
            (False, None, "ssh"),
            (True, None, "cloud-init"),
            (False, "cloud-init", "cloud-init"),
            (True, "ssh", "ssh"),
        ):
            extra = {"bootstrap": bootstrap} if bootstrap else {}
            await vault.put(HOSTWINDS_SECRET, {**account, **extra})
            chosen = settings.model_copy(update={"hostwinds_user_data": flag})
            providers = ProviderRegistry(chosen if flag else settings, vault)
            entry = await providers.get("hostwinds")
            assert isinstance(entry.provider, HostwindsProvider)
            assert entry.bootstrap == expected
            assert entry.provider.settings.send_user_data is (expected == "cloud-init")
            await providers.aclose()
    finally:
        await vault.delete(HOSTWINDS_SECRET)
