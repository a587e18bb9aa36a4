"""The IP switch in-process, on both databases: the API and a runner against the Hostwinds
contract double (PTR), a real Knot (the DNS provider) and an agent stand-in settling the
commands. Faults go one after another into the same server — provider PTR error, DNS
refused, SNAT refused by nft, egress seen from the wrong address — each rolling back exactly
the steps before it; then the switch that succeeds, and the old address's DNS withdrawal."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select, update

from control_plane.api.app import create_app
from control_plane.commands.models import Command
from control_plane.db.engine import Database
from control_plane.health.models import HealthCheck
from control_plane.ipswitch.models import IpSwitch, IpSwitchStep
from control_plane.ipswitch.runner import IpSwitchRunner
from control_plane.ipswitch.workflow import Workflow
from control_plane.provisioning.registry import HOSTWINDS_SECRET, ProviderRegistry
from control_plane.provisioning.workflow import Wait
from control_plane.settings import Settings
from control_plane.vault.client import Vault
from tests.conftest import MakeTenant, TenantHandle
from tests.fakes.hostwinds import HostwindsDouble, hostwinds_double
from tests.ipswitch.fixtures import (
    IP1,
    IP2,
    OLD_PTR,
    AgentStandIn,
    Switchable,
    ip_rows,
    running,
    switchable_server,
)
from tests.support.knot import KnotServer, zone_text

API_KEY = "hwk-0123456789abcdef0123456789abcdef"
FINAL = ("succeeded", "rolled_back", "failed")


@pytest.fixture
def zone() -> str:
    return f"sw-{uuid.uuid4().hex[:8]}.test"


@pytest.fixture
def knot_zones(zone: str) -> dict[str, str]:
    return {f"{zone}.": zone_text(f"{zone}.")}


@pytest.fixture
def api() -> Iterator[HostwindsDouble]:
    with hostwinds_double(api_key=API_KEY) as double:
        yield double


@pytest.fixture
def fast(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "ip_switch_tick_seconds": 0.1,
            "ip_switch_step_timeout_seconds": 5.0,
            "ip_switch_drain_seconds": 0.5,
            "ip_switch_dns_grace_seconds": 1.0,
            "ip_switch_lease_seconds": 2.0,
            "smtp_observer_addr": "127.0.0.1:2525",
            "health_outbound_timeout_seconds": 2.0,
        }
    )


@pytest_asyncio.fixture
async def bare(
    api: HostwindsDouble, fast: Settings, db: Database, vault: Vault
) -> AsyncIterator[tuple[httpx.AsyncClient, Workflow]]:
    """The API and the switch workflow, no runner yet; Hostwinds configured in Vault."""
    await vault.put(
        HOSTWINDS_SECRET,
        {"api_key": API_KEY, "template": "debian-12", "regions": "2=Dallas", "base_url": api.url},
    )
    providers = ProviderRegistry(fast, vault)
    app = create_app(fast, database=db, vault=vault, providers=providers)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://mailfleet.test"
        ) as client:
            yield client, Workflow(fast, db, vault, providers)
    finally:
        await providers.aclose()
        await vault.delete(HOSTWINDS_SECRET)


@contextlib.asynccontextmanager
async def runner_of(fast: Settings, db: Database, workflow: Workflow) -> AsyncIterator[None]:
    task = asyncio.create_task(IpSwitchRunner(fast, db, workflow).run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest_asyncio.fixture
async def plane(
    bare: tuple[httpx.AsyncClient, Workflow], fast: Settings, db: Database
) -> AsyncIterator[httpx.AsyncClient]:
    """The API with an IP switch runner beside it."""
    client, workflow = bare
    async with runner_of(fast, db, workflow):
        yield client


@pytest_asyncio.fixture
async def made(
    bare: tuple[httpx.AsyncClient, Workflow],
    make_tenant: MakeTenant,
    db: Database,
    api: HostwindsDouble,
    knot_primary: KnotServer,
    zone: str,
) -> tuple[TenantHandle, Switchable]:
    """A tenant and its switchable server (IP1 sending, IP2 standby; zone in Knot)."""
    tenant = await make_tenant()
    return tenant, await switchable_server(bare[0], tenant, db, api, knot_primary, zone)


async def start(
    client: httpx.AsyncClient, tenant: TenantHandle, server_id: uuid.UUID, expect: int = 202,
    **body: Any,
) -> Any:  # fmt: skip
    response = await client.post(
        f"/api/v1/servers/{server_id}/ip-switches", json=body, headers=tenant.headers
    )
    assert response.status_code == expect, response.text
    return response.json()


async def settled(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    server_id: uuid.UUID,
    switch_id: str,
    done: Callable[[dict[str, Any]], bool] = lambda switch: switch["state"] in FINAL,
) -> dict[str, Any]:
    """The switch once ``done`` says so (by default: once it ended)."""
    deadline = time.monotonic() + 30
    while True:
        response = await client.get(
            f"/api/v1/servers/{server_id}/ip-switches/{switch_id}", headers=tenant.headers
        )
        assert response.status_code == 200, response.text
        switch: dict[str, Any] = response.json()
        if done(switch):
            return switch
        assert time.monotonic() < deadline, switch
        await asyncio.sleep(0.05)


def states(switch: dict[str, Any]) -> dict[str, str]:
    return {step["name"]: step["state"] for step in switch["steps"]}


async def test_each_fault_rolls_back_the_steps_before_it_then_the_switch_succeeds(
    plane: httpx.AsyncClient,
    made: tuple[TenantHandle, Switchable],
    db: Database,
    vault: Vault,
    api: HostwindsDouble,
    knot_primary: KnotServer,
) -> None:
    tenant, sw = made
    assert knot_primary.query(sw.host, "A").values == [IP1]
    agent = AgentStandIn(db, sw.server_id)
    async with running(agent):
        # 1. The provider refuses the PTR: nothing before it changed anything.
        api.fail_next(kind="error_body", actions=["set_rdns"], message="rDNS service down")
        failed = await settled(plane, tenant, sw.server_id, (await start(
            plane, tenant, sw.server_id, to_ip=IP2))["id"])  # fmt: skip
        assert failed["state"] == "rolled_back", failed
        assert states(failed) == {
            "preconditions": "done", "ptr": "failed", "dns": "skipped", "snat": "skipped",
            "egress": "skipped", "drain": "skipped", "withdraw": "skipped",
        }, failed  # fmt: skip
        assert "rDNS service down" in failed["error"] and failed["error"].startswith("ptr:")
        assert api.rdns_of(sw.serviceid, IP2) == OLD_PTR
        assert not [k for k, _ in agent.answered if k == "network.snat.set"]

        # 2. The DNS provider refuses the update (a wrong TSIG key): the PTR is put back.
        secret_path = f"dns/{tenant.id}/{sw.provider_id}"
        await vault.put(secret_path, {"key_secret": "d3Jvbmcta2V5LXdyb25nLWtleQ=="})
        switch = await start(plane, tenant, sw.server_id, to_ip=IP2)
        failed = await settled(plane, tenant, sw.server_id, switch["id"])
        await vault.put(secret_path, {"key_secret": knot_primary.key.secret})
        assert failed["state"] == "rolled_back", failed
        assert states(failed)["ptr"] == "rolled_back" and states(failed)["dns"] == "failed"
        assert states(failed)["snat"] == "skipped"
        assert "TSIG" in failed["error"], failed["error"]
        assert api.rdns_of(sw.serviceid, IP2) == OLD_PTR
        rows = await ip_rows(db, sw.server_id)
        assert not rows[IP2].dns_published and rows[IP2].ptr == OLD_PTR
        assert knot_primary.query(sw.host, "A").values == [IP1]

        # 3. nft refuses the new SNAT: PTR and DNS undone, the old SNAT set again.
        agent.snat_fails = IP2
        failed = await settled(plane, tenant, sw.server_id, (await start(
            plane, tenant, sw.server_id, to_ip=IP2))["id"])  # fmt: skip
        agent.snat_fails = None
        assert failed["state"] == "rolled_back", failed
        assert {k: states(failed)[k] for k in ("ptr", "dns", "snat", "egress")} == {
            "ptr": "rolled_back", "dns": "rolled_back", "snat": "failed", "egress": "skipped",
        }, failed  # fmt: skip
        assert "not an address on this machine" in failed["error"]
        assert agent.snat is None  # mail leaves from the main address, as before
        assert knot_primary.query(sw.host, "A").values == [IP1]
        assert api.rdns_of(sw.serviceid, IP2) == OLD_PTR

        # 4. The observer sees the wrong address: the SNAT is taken back too.
        agent.seen = IP1
        failed = await settled(plane, tenant, sw.server_id, (await start(
            plane, tenant, sw.server_id, to_ip=IP2))["id"])  # fmt: skip
        agent.seen = None
        assert failed["state"] == "rolled_back", failed
        assert {k: states(failed)[k] for k in ("ptr", "dns", "snat", "egress", "drain")} == {
            "ptr": "rolled_back", "dns": "rolled_back", "snat": "rolled_back",
            "egress": "failed", "drain": "skipped",
        }, failed  # fmt: skip
        assert (
            f"mail leaves from {IP1}, not from the server's sending address {IP2}"
            in (failed["error"])
        )
        assert agent.snat is None
        rows = await ip_rows(db, sw.server_id)
        assert (rows[IP1].role, rows[IP2].role) == ("sending", "standby")
        assert knot_primary.query(sw.host, "A").values == [IP1]

        (incident,) = await switch_incidents(plane, tenant, sw.server_id, "open")
        assert incident["severity"] == "warning" and "rolled back" in incident["summary"]

        # 5. No fault: the switch succeeds; the old address leaves DNS after the grace.
        done = await settled(plane, tenant, sw.server_id, (await start(
            plane, tenant, sw.server_id, to_ip=IP2))["id"])  # fmt: skip
        assert done["state"] == "succeeded", done
        assert (done["from_ip"], done["to_ip"], done["error"]) == (IP1, IP2, None)
        assert [s["state"] for s in done["steps"]][:6] == ["done"] * 6
        assert states_detail(done, "withdraw").startswith(f"{IP1} leaves the A record and SPF at ")
        assert "FCrDNS holds" in states_detail(done, "dns")
        assert agent.snat == IP2
        (_, probe) = [a for a in agent.answered if a[0] == "smtp.probe_out"][-1]
        assert (probe["host"], probe["port"], probe["purpose"]) == ("127.0.0.1", 2525, "ip-switch")
        snat_ports = [p["ports"] for k, p in agent.answered if k == "network.snat.set"][-1]
        assert snat_ports == [25, 2525]  # the observer's port goes the same way
        assert api.rdns_of(sw.serviceid, IP2) == sw.host
        rows = await ip_rows(db, sw.server_id)
        assert (rows[IP1].role, rows[IP2].role) == ("standby", "sending")
        assert sorted(knot_primary.query(sw.host, "A").values) == sorted([IP1, IP2])
        withdrawn = await settled(
            plane, tenant, sw.server_id, done["id"], lambda s: states(s)["withdraw"] == "done"
        )
        assert states(withdrawn)["withdraw"] == "done"
        assert knot_primary.query(sw.host, "A").values == [IP2]
        assert not (await ip_rows(db, sw.server_id))[IP1].dns_published
    async with db.session() as session:  # the switch's probes are its own, not health's
        outbound = await session.scalar(
            select(HealthCheck).where(
                HealthCheck.server_id == sw.server_id, HealthCheck.check == "smtp.outbound"
            )
        )
    assert outbound is None
    assert await switch_incidents(plane, tenant, sw.server_id, "open") == []

    listing = await plane.get(f"/api/v1/servers/{sw.server_id}/ip-switches", headers=tenant.headers)
    assert [s["state"] for s in listing.json()["items"]] == ["rolled_back"] * 4 + ["succeeded"]
    events = await plane.get(f"/api/v1/ips/{IP2}", headers=tenant.headers)
    if events.status_code == 200 and "events" in events.json():
        assert any(e["kind"] == "switch" for e in events.json()["events"])


def states_detail(switch: dict[str, Any], name: str) -> str:
    return str(next(s["detail"] for s in switch["steps"] if s["name"] == name))


async def test_requests_are_checked_one_runs_at_a_time_and_other_tenants_see_nothing(
    plane: httpx.AsyncClient,
    made: tuple[TenantHandle, Switchable],
    make_tenant: MakeTenant,
    db: Database,
) -> None:
    (tenant, sw), stranger = made, await make_tenant()
    for body, field, words in (
        ({}, "body.to_ip", "give the address"),
        ({"to_ip": IP2, "auto": True}, "body.auto", "not both"),
        ({"to_ip": "not-an-ip"}, "body.to_ip", ""),
        ({"to_ip": "198.51.100.99"}, "body.to_ip", "not an address of this server"),
        ({"to_ip": IP1}, "body.to_ip", "already the sending address"),
        ({"auto": True}, "body.auto", "no standby address"),  # IP2 never checked: not clean
    ):
        problem = await start(plane, tenant, sw.server_id, 422, **body)
        assert problem["errors"][0]["field"] == field, problem
        assert words in problem["detail"], problem
    rows = await ip_rows(db, sw.server_id)
    async with db.session() as session:
        row = await session.get(type(rows[IP2]), rows[IP2].id)
        assert row is not None
        row.listing, row.score = "listed", 40
    problem = await start(plane, tenant, sw.server_id, 422, to_ip=IP2)
    assert "listed" in problem["detail"] and problem["errors"][0]["field"] == "body.to_ip"
    async with db.session() as session:
        row = await session.get(type(rows[IP2]), rows[IP2].id)
        assert row is not None
        row.listing, row.score, row.paused_at, row.paused_reason = (
            "clean",
            100,
            row.assigned_at,
            "x",
        )
    problem = await start(plane, tenant, sw.server_id, 422, to_ip=IP2)
    assert "paused" in problem["detail"], problem
    async with db.session() as session:
        row = await session.get(type(rows[IP2]), rows[IP2].id)
        assert row is not None
        row.paused_at = row.paused_reason = None

    # No agent answers here: the switch waits in its preconditions.
    switch = await start(plane, tenant, sw.server_id, auto=True)
    assert (switch["to_ip"], switch["from_ip"], switch["auto"]) == (IP2, IP1, True)
    assert switch["state"] == "running" and switch["steps"][0]["state"] == "running"
    assert switch["requested_by"].startswith("owner (")  # the key's name and id
    busy = await start(plane, tenant, sw.server_id, 409, to_ip=IP2)
    assert "already running" in busy["detail"]

    base = f"/api/v1/servers/{sw.server_id}/ip-switches"
    for method, path in (("GET", base), ("GET", f"{base}/{switch['id']}"), ("POST", base)):
        response = await plane.request(
            method,
            path,
            headers=stranger.headers,
            json={"to_ip": IP2} if method == "POST" else None,
        )
        assert response.status_code == 404, (method, path, response.text)
    other = await plane.get(f"/api/v1/servers/{uuid.uuid4()}/ip-switches/{switch['id']}",
                            headers=tenant.headers)  # fmt: skip
    assert other.status_code == 404
    async with db.session() as session:  # leave no running switch to later tests' runners
        await session.execute(
            update(IpSwitch).where(IpSwitch.id == uuid.UUID(switch["id"]))
            .values(state="failed", next_run_at=None)
        )  # fmt: skip


@pytest.mark.postgres_only  # its database code runs on both in the fault test
async def test_a_replica_dying_mid_step_hands_the_switch_over_once_its_lease_lapses(
    bare: tuple[httpx.AsyncClient, Workflow],
    fast: Settings,
    made: tuple[TenantHandle, Switchable],
    db: Database,
) -> None:
    client, workflow = bare
    tenant, sw = made
    switch = await start(client, tenant, sw.server_id, to_ip=IP2)
    # A replica claims the switch, queues its step's command, and dies before recording it.
    dead = IpSwitchRunner(fast, db, workflow)
    (claimed,) = [s for s in await dead.claim(50) if str(s.id) == switch["id"]]
    async with db.session() as session:
        step = await session.scalar(
            select(IpSwitchStep).where(
                IpSwitchStep.switch_id == claimed.id, IpSwitchStep.position == 0
            )
        )
    assert step is not None
    assert isinstance(await workflow.forward(claimed, step), Wait)
    agent = AgentStandIn(db, sw.server_id)
    async with running(agent), runner_of(fast, db, workflow):
        await asyncio.sleep(0.5)  # within the lease (2 s): nobody else touches it
        async with db.session() as session:
            held = await session.get(IpSwitch, claimed.id)
            assert held is not None and held.lease_owner == dead.owner
            assert held.step_command_id is None
        done = await settled(client, tenant, sw.server_id, switch["id"])
    assert done["state"] == "succeeded", done
    kinds = [kind for kind, _ in agent.answered]
    # The second replica found the command the first had queued (one show, one set).
    assert (kinds.count("network.snat.show"), kinds.count("network.snat.set")) == (1, 1)


async def test_an_undo_that_fails_leaves_the_switch_failed_saying_what_is_left(
    plane: httpx.AsyncClient,
    made: tuple[TenantHandle, Switchable],
    db: Database,
) -> None:
    tenant, sw = made
    agent = AgentStandIn(db, sw.server_id, seen=IP1, restore_fails=True)
    async with running(agent):
        failed = await settled(plane, tenant, sw.server_id, (await start(
            plane, tenant, sw.server_id, to_ip=IP2))["id"])  # fmt: skip
    assert failed["state"] == "failed", failed
    assert {k: states(failed)[k] for k in ("ptr", "dns", "snat", "egress")} == {
        "ptr": "done", "dns": "done", "snat": "done", "egress": "failed",
    }, failed  # fmt: skip
    error = failed["error"]
    assert error.startswith("egress: egress check: mail leaves from"), error
    assert "rolling back snat failed: network.snat.set failed: nft:" in error, error
    assert f"left as it is: the PTR of {IP2} still points to the mail host; {IP2} is still " in (
        error
    )
    assert f"outbound mail still leaves from {IP2} (SNAT)" in error
    assert "undo failed" in states_detail(failed, "snat")
    (incident,) = await switch_incidents(plane, tenant, sw.server_id, "open")
    assert incident["severity"] == "critical" and "left as it is" in incident["summary"]
    rows = await ip_rows(db, sw.server_id)
    assert (rows[IP1].role, rows[IP2].role) == ("sending", "standby")  # roles never moved


@pytest.mark.postgres_only  # its database code runs on both in the fault test
async def test_a_snat_change_never_delivered_is_withdrawn_and_not_undone(
    plane: httpx.AsyncClient,
    made: tuple[TenantHandle, Switchable],
    db: Database,
) -> None:
    """The agent is away when the SNAT change is sent: the step fails at its deadline, the
    queued command is cancelled (an agent back later must not run it), and only the steps
    before it are undone."""
    tenant, sw = made
    agent = AgentStandIn(db, sw.server_id, away={"network.snat.set"})
    async with running(agent):
        failed = await settled(plane, tenant, sw.server_id, (await start(
            plane, tenant, sw.server_id, to_ip=IP2))["id"])  # fmt: skip
    assert failed["state"] == "rolled_back", failed
    assert {k: states(failed)[k] for k in ("ptr", "dns", "snat")} == {
        "ptr": "rolled_back", "dns": "rolled_back", "snat": "failed",
    }, failed  # fmt: skip
    assert "snat did not finish within 5 s" in failed["error"], failed["error"]
    async with db.session() as session:
        sent = list(
            await session.scalars(
                select(Command).where(
                    Command.server_id == sw.server_id, Command.kind == "network.snat.set"
                )
            )
        )
    assert [c.state for c in sent] == ["cancelled"]  # and no undo was sent


@pytest.mark.postgres_only  # its database code runs on both in the fault test
async def test_without_an_observer_egress_cannot_be_verified_and_the_switch_rolls_back(
    bare: tuple[httpx.AsyncClient, Workflow],
    fast: Settings,
    made: tuple[TenantHandle, Switchable],
    db: Database,
) -> None:
    client, workflow = bare
    blind = fast.model_copy(update={"smtp_observer_addr": None})
    tenant, sw = made
    agent = AgentStandIn(db, sw.server_id)
    steps = Workflow(blind, db, workflow.vault, workflow.providers)
    async with running(agent), runner_of(blind, db, steps):
        failed = await settled(client, tenant, sw.server_id, (await start(
            client, tenant, sw.server_id, to_ip=IP2))["id"])  # fmt: skip
    assert failed["state"] == "rolled_back", failed
    assert states(failed)["egress"] == "failed" and states(failed)["snat"] == "rolled_back"
    assert "no SMTP observer is configured (MAILFLEET_SMTP_OBSERVER_ADDR)" in failed["error"]
    assert agent.snat is None
    assert not [kind for kind, _ in agent.answered if kind == "smtp.probe_out"]
    (snat_set, _) = [p for k, p in agent.answered if k == "network.snat.set"]
    assert snat_set["ports"] == [25]  # no observer: only the mail port


async def switch_incidents(
    client: httpx.AsyncClient, tenant: TenantHandle, server_id: uuid.UUID, state: str
) -> list[Any]:
    response = await client.get(
        "/api/v1/incidents",
        params={"state": state, "server_id": str(server_id)},
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text
    return [i for i in response.json()["items"] if i["check"] == "ip.switch"]
