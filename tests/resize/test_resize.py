"""Recommendations and resizes in-process, on both databases, against the Hostwinds contract
double: usage generated as hourly rollups (down and up, not enough data), the dry run that
changes nothing, the upgrade flow in the documented order, a failure after
``upgrade_server`` that reverts it, and other tenants' 404 on every route."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import delete, select

from control_plane.api.app import create_app
from control_plane.costs import meter
from control_plane.db.base import utcnow
from control_plane.db.engine import Database
from control_plane.errors import Conflict
from control_plane.incidents.service import find_open
from control_plane.ipswitch.models import IpSwitch
from control_plane.ipswitch.schemas import IpSwitchIn
from control_plane.ipswitch.service import request_switch
from control_plane.provisioning import registry
from control_plane.provisioning.models import ServerEvent
from control_plane.provisioning.registry import HOSTWINDS_SECRET, ProviderRegistry
from control_plane.provisioning.service import order_server
from control_plane.resize import workflow
from control_plane.resize.models import ServerResize, ServerResizeStep
from control_plane.resize.runner import CHECK, ResizeRunner
from control_plane.resize.service import preview as resize_preview
from control_plane.servers.models import Server
from control_plane.servers.schemas import ServerCreate
from control_plane.settings import Settings
from control_plane.vault.client import Vault
from control_plane.workflows.busy import refuse_while_another_runs
from tests.conftest import MakeTenant, TenantHandle
from tests.control_plane.costs.ledger import spans_of
from tests.fakes.hostwinds import (
    HostwindsDouble,
    hostwinds_double,
)
from tests.resize.fixtures import (
    API_KEY,
    GIB,
    PLANS,
    hostwinds_server,
    quick_driver,
    usage,
)


@pytest.fixture
def api() -> Iterator[HostwindsDouble]:
    with hostwinds_double(api_key=API_KEY, plans=PLANS, resize_delay=0.2) as double:
        yield double


@pytest.fixture
def fast(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "resize_tick_seconds": 0.1,
            "resize_step_timeout_seconds": 2.0,
            "resize_lease_seconds": 2.0,
            "recommendation_min_hours": 24,
        }
    )


@pytest_asyncio.fixture
async def plane(
    api: HostwindsDouble,
    fast: Settings,
    db: Database,
    vault: Vault,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[tuple[httpx.AsyncClient, ProviderRegistry]]:
    """The API with Hostwinds configured in Vault (no resize runner yet)."""
    monkeypatch.setattr(registry, "hostwinds_from_secret", quick_driver)
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
            yield client, providers
    finally:
        await providers.aclose()
        await vault.delete(HOSTWINDS_SECRET)


@contextlib.asynccontextmanager
async def runner(fast: Settings, db: Database, providers: ProviderRegistry) -> AsyncIterator[None]:
    task = asyncio.create_task(ResizeRunner(fast, db, workflow.Workflow(fast, db, providers)).run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def call(
    client: httpx.AsyncClient, tenant: TenantHandle, method: str, path: str, expect: int,
    **body: Any,
) -> Any:  # fmt: skip
    response = await client.request(
        method, path, headers=tenant.headers, json=body if method == "POST" else None
    )
    assert response.status_code == expect, (method, path, response.text)
    return response.json()


async def ended(client: httpx.AsyncClient, tenant: TenantHandle, path: str) -> Any:
    deadline = time.monotonic() + 30
    while True:
        found = await call(client, tenant, "GET", path, 200)
        if found["state"] in ("succeeded", "failed"):
            return found
        assert time.monotonic() < deadline, found
        await asyncio.sleep(0.05)


async def test_recommendations_from_generated_usage_down_up_and_unknown(
    plane: tuple[httpx.AsyncClient, ProviderRegistry],
    make_tenant: MakeTenant,
    db: Database,
    api: HostwindsDouble,
) -> None:
    client, _ = plane
    tenant = await make_tenant()
    server_id, _ = await hostwinds_server(client, tenant, db, api, rid=12)  # 2 vCPU, 4 GB
    path = f"/api/v1/servers/{server_id}/recommendations"

    await usage(db, tenant, server_id, hours=10, cpu=10, memory_gib=1, disk_gib=30)
    unknown = await call(client, tenant, "GET", path, 200)
    assert unknown["state"] == "unknown" and unknown["recommended_plan"] is None, unknown
    assert "not enough data: 10 hour(s)" in unknown["reason"], unknown

    # Idle: p90 CPU ≈ 0.23 cores, memory 1.2 GiB, disk 30 GiB → plan 14 (1 vCPU, 2 GB, same
    # 75 GB disk), not 11 (cheaper, but its 50 GB disk would shrink the server's 75 GB).
    await usage(db, tenant, server_id, hours=72, cpu=10, memory_gib=1.2, disk_gib=30)
    down = await call(client, tenant, "GET", path, 200)
    assert (down["state"], down["direction"]) == ("resize", "down"), down
    assert down["current_plan"]["id"] == "12" and down["recommended_plan"]["id"] == "14"
    assert Decimal(down["monthly_price_difference"]) == Decimal("-5.00")
    assert down["currency"] == "USD" and down["driver"] == "memory"
    evidence = {e["resource"]: e for e in down["evidence"]}
    assert evidence["memory"]["percentile"] == pytest.approx(1.2 * GIB)
    assert evidence["memory"]["target"] == pytest.approx(1.2 * GIB * 1.15)
    assert evidence["disk"]["series"] == "fs_used_bytes:/" and evidence["cpu"]["hours"] == 72
    assert 0.2 < evidence["cpu"]["percentile"] < 0.25, evidence["cpu"]  # cores of 2 vCPUs

    # Busy memory: p90 5 GiB × 1.15 needs 8 GB → plan 13, +17.00 a month.
    await usage(db, tenant, server_id, hours=72, cpu=30, memory_gib=5, disk_gib=30)
    up = await call(client, tenant, "GET", path, 200)
    assert (up["state"], up["direction"], up["driver"]) == ("resize", "up", "memory"), up
    assert up["recommended_plan"]["id"] == "13"
    assert Decimal(up["monthly_price_difference"]) == Decimal("17.00")
    assert "memory p90 5.00 GiB → target 5.75 GiB" in up["reason"], up

    # Just right: 12 is the cheapest that fits.
    await usage(db, tenant, server_id, hours=72, cpu=30, memory_gib=3, disk_gib=30)
    keep = await call(client, tenant, "GET", path, 200)
    assert keep["state"] == "keep" and Decimal(keep["monthly_price_difference"]) == 0, keep

    # A provider not configured here (its plans cannot be read): no verdict, and why.
    async with db.session() as session:
        server = await session.get(Server, server_id)
        assert server is not None
        server.provider = "vultr"
    unread = await call(client, tenant, "GET", path, 200)
    assert unread["state"] == "unknown" and unread["recommended_plan"] is None, unread
    assert "vultr's plans cannot be read" in unread["reason"], unread
    async with db.session() as session:  # back as it was, for whatever runs next
        server = await session.get(Server, server_id)
        assert server is not None
        server.provider = "hostwinds"


async def test_an_ordered_server_records_its_plan_price(
    plane: tuple[httpx.AsyncClient, ProviderRegistry],
    make_tenant: MakeTenant,
    fast: Settings,
    db: Database,
) -> None:
    """Ordering (not only resizing) records the catalog's price of the plan."""
    _, providers = plane
    tenant = await make_tenant()
    order = ServerCreate(
        name=f"po-{uuid.uuid4().hex[:6]}", provider="hostwinds", region="2", plan="13",
        mail_stack="none",
    )  # fmt: skip
    async with db.session() as session:
        server = await order_server(session, providers, fast, uuid.UUID(tenant.id), order)
        server_id = server.id
    async with db.session() as session:
        stored = await session.get(Server, server_id)
        assert stored is not None and stored.plan == "13"
        assert (stored.plan_monthly_price, stored.plan_currency) == (Decimal("34.99"), "USD")
        # left 'requested', a provisioning runner of a later test would rent it
        await session.execute(delete(Server).where(Server.id == server_id))


async def test_a_resize_and_an_ip_switch_of_one_server_refuse_each_other(
    plane: tuple[httpx.AsyncClient, ProviderRegistry],
    make_tenant: MakeTenant,
    fast: Settings,
    db: Database,
    api: HostwindsDouble,
) -> None:
    """Whichever runs first, the other is refused (409 naming it), in both directions."""
    client, providers = plane
    tenant = await make_tenant()
    server_id, _ = await hostwinds_server(client, tenant, db, api, rid=12)
    owner, now = uuid.UUID(tenant.id), utcnow()
    switch = IpSwitch(
        tenant_id=owner, server_id=server_id, from_ip="198.51.100.31", to_ip="198.51.100.32",
        requested_by="test", state="running", next_run_at=now,
    )  # fmt: skip
    resize = ServerResize(
        tenant_id=owner, server_id=server_id, provider="hostwinds", from_plan="12",
        to_plan="13", from_price=Decimal("17.99"), to_price=Decimal("34.99"), currency="USD",
        to_vcpus=4, to_memory_mb=8192, requested_by="test", state="running", next_run_at=now,
    )  # fmt: skip
    async with db.session() as session:
        session.add(switch)
    async with db.session() as session:
        server = await session.get(Server, server_id)
        assert server is not None
        with pytest.raises(Conflict, match=f"IP switch {switch.id} is running"):
            await resize_preview(session, providers, server, "13")
        (await session.get(IpSwitch, switch.id)).state = "failed"  # type: ignore[union-attr]
    async with db.session() as session:
        session.add(resize)
    async with db.session() as session:
        server = await session.get(Server, server_id)
        assert server is not None
        with pytest.raises(Conflict, match=f"resize {resize.id} is running"):
            await request_switch(session, fast, server, IpSwitchIn(auto=True), "test")


async def test_a_resize_and_an_ip_switch_recorded_at_the_same_instant_cannot_both_run(
    plane: tuple[httpx.AsyncClient, ProviderRegistry],
    make_tenant: MakeTenant,
    db: Database,
    api: HostwindsDouble,
) -> None:
    """The busy check holds the server until its transaction ends: a switch checked while
    a resize is being recorded waits for it, then sees it and is refused."""
    client, _ = plane
    tenant = await make_tenant()
    server_id, _ = await hostwinds_server(client, tenant, db, api, rid=13)
    resize = ServerResize(
        tenant_id=uuid.UUID(tenant.id), server_id=server_id, provider="hostwinds",
        from_plan="12", to_plan="13", from_price=Decimal("17.99"), to_price=Decimal("34.99"),
        currency="USD", to_vcpus=4, to_memory_mb=8192, requested_by="test", state="running",
        next_run_at=utcnow(),
    )  # fmt: skip

    async def switch_checked() -> None:
        async with db.session() as session:
            await refuse_while_another_runs(session, server_id, IpSwitch, "switch")

    async with db.session() as session:
        await refuse_while_another_runs(session, server_id, ServerResize, "resize")
        session.add(resize)
        await session.flush()
        other = asyncio.ensure_future(switch_checked())
        await asyncio.sleep(0.5)
        assert not other.done()  # waits for the resize's transaction
    with pytest.raises(Conflict, match=f"resize {resize.id} is running"):
        await asyncio.wait_for(other, 15)


async def test_dry_run_upgrade_revert_and_other_tenants(
    plane: tuple[httpx.AsyncClient, ProviderRegistry],
    fast: Settings,
    make_tenant: MakeTenant,
    db: Database,
    api: HostwindsDouble,
) -> None:
    client, providers = plane
    tenant, stranger = await make_tenant(), await make_tenant()
    server_id, serviceid = await hostwinds_server(client, tenant, db, api, rid=12)
    base = f"/api/v1/servers/{server_id}"

    # Refused before anything is written: unknown plan, the same plan, a shrinking disk.
    for plan, words in (("99", "unknown plan '99'"), ("12", "already on 12"),
                        ("11", "cannot shrink a disk")):  # fmt: skip
        problem = await call(client, tenant, "POST", f"{base}/resize", 422, plan=plan)
        assert problem["errors"][0]["field"] == "body.plan" and words in problem["detail"]

    # The dry run: the preview, nothing changed, nothing ordered.
    preview = await call(client, tenant, "POST", f"{base}/resize", 200, plan="13", dry_run=True)
    assert preview["resize"] is None
    p = preview["preview"]
    assert (p["current_plan"]["id"], p["new_plan"]["id"], p["direction"]) == ("12", "13", "up")
    assert Decimal(p["monthly_price"]) == Decimal("34.99")
    assert Decimal(p["monthly_price_difference"]) == Decimal("17.00") and p["currency"] == "USD"
    assert "restart" in p["expected_downtime"]
    assert [s["name"] for s in p["steps"]] == list(workflow.STEPS)
    assert (await call(client, tenant, "GET", f"{base}/resizes", 200))["items"] == []
    assert not [c for c in api.calls if "upgrade" in c.action]

    # The real one, first without a runner: a second request is refused while it runs.
    started = await call(client, tenant, "POST", f"{base}/resize", 202, plan="13")
    resize_id = started["resize"]["id"]
    assert started["resize"]["state"] == "running" and started["resize"]["progress"] == 0
    busy = await call(client, tenant, "POST", f"{base}/resize", 409, plan="15")
    assert "already running" in busy["detail"]

    # Other tenants see none of it.
    routes = (("GET", f"{base}/recommendations"), ("POST", f"{base}/resize"),
              ("GET", f"{base}/resizes"), ("GET", f"{base}/resizes/{resize_id}"))  # fmt: skip
    for method, path in routes:
        response = await client.request(
            method,
            path,
            headers=stranger.headers,
            json={"plan": "13"} if method == "POST" else None,
        )
        assert response.status_code == 404, (method, path, response.text)

    async with db.session() as session:  # billed on 12 since the instance was created
        row = await session.get(Server, server_id)
        assert row is not None
        await meter.open_span(session, row, "server", "12", utcnow() - timedelta(days=3))
    async with runner(fast, db, providers):
        done = await ended(client, tenant, f"{base}/resizes/{resize_id}")
        assert done["state"] == "succeeded" and done["progress"] == 1.0, (
            done["error"],
            done["steps"],
        )
        assert {s["name"]: s["state"] for s in done["steps"]} == {
            "preconditions": "done", "resize": "done", "wait": "done", "verify": "skipped",
            "confirm": "done", "record": "done", "revert": "skipped",
        }, done  # fmt: skip
        upgrade = [c.action for c in api.calls if "upgrade" in c.action]
        # As documented: no open order, the order (and invoice, paid from the account's
        # credit), the order checked, applying it, confirming.
        assert upgrade == [
            "check_upgrade_order", "upgrade_instance", "check_upgrade_order", "upgrade_server",
            "confirm_upgrade",
        ], upgrade  # fmt: skip
        assert "revert_upgrade" not in upgrade and api.instances[serviceid].rid == 13

        # A failure after upgrade_server (the confirmation refused) reverts the upgrade.
        api.fail_next(kind="error_body", actions=["confirm_upgrade"], message="billing hold",
                      count=1000)  # fmt: skip
        second = await call(client, tenant, "POST", f"{base}/resize", 202, plan="15")
        failed = await ended(client, tenant, f"{base}/resizes/{second['resize']['id']}")
    assert failed["state"] == "failed" and "billing hold" in failed["error"], failed
    assert {s["name"]: s["state"] for s in failed["steps"]}["revert"] == "done", failed
    assert failed["error"].startswith("confirm:") and "reverted" in failed["error"]
    assert api.calls_of("revert_upgrade") and api.instances[serviceid].rid == 13
    assert api.instances[serviceid].order is None
    # The ledger moved to 13 at the confirmation (one span ends as the next starts); the
    # reverted resize changed nothing.
    async with db.session() as session:
        confirmed = await session.scalar(
            select(ServerResizeStep.finished_at).where(
                ServerResizeStep.resize_id == uuid.UUID(resize_id),
                ServerResizeStep.name == "confirm",
            )
        )
    old, new = await spans_of(db, server_id, "server")
    assert confirmed is not None and (old.item, new.item) == ("12", "13")
    assert old.ended_at == new.started_at == confirmed and new.ended_at is None

    async with db.session() as session:
        server = await session.get(Server, server_id)
        assert server is not None
        assert (server.plan, server.plan_monthly_price) == ("13", Decimal("34.99"))
        messages = list(await session.scalars(
            select(ServerEvent.message).where(ServerEvent.server_id == server_id,
                                              ServerEvent.kind == "resize")
        ))  # fmt: skip
        incident = await find_open(session, uuid.UUID(tenant.id), "server", str(server_id), CHECK)
        rows = list(await session.scalars(
            select(ServerResize).where(ServerResize.server_id == server_id)
        ))  # fmt: skip
    assert any("now on 13 (34.99 USD/month, was 12" in m for m in messages), messages
    assert any("failed" in m and "keeps 13" in m for m in messages), messages
    history = await call(client, tenant, "GET", f"{base}/resizes", 200)
    assert [(r["from_plan"], r["to_plan"], r["state"]) for r in history["items"]] == [
        ("12", "13", "succeeded"),
        ("13", "15", "failed"),
    ]
    assert len(rows) == 2
    assert incident is not None and "billing hold" in incident.summary, incident

    # An invoice the account's credit does not cover: the upgrade is never applied; the
    # resize retries until its deadline, then fails naming the invoice (nothing to revert).
    api.credit = Decimal(0)
    applied = len(api.calls_of("upgrade_server"))
    async with runner(fast, db, providers):
        third = await call(client, tenant, "POST", f"{base}/resize", 202, plan="15")
        unpaid = await ended(client, tenant, f"{base}/resizes/{third['resize']['id']}")
    assert unpaid["state"] == "failed" and "is paid" in unpaid["error"], unpaid
    assert "invoice" in unpaid["error"] and unpaid["error"].startswith("resize:"), unpaid
    assert len(api.calls_of("upgrade_server")) == applied and api.instances[serviceid].rid == 13
