"""The ip-inventory and ip-warmup jobs, provisioning's sync, and the warmup cap math."""

from __future__ import annotations

import itertools
import json
from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import select

from control_plane.commands.models import Command
from control_plane.db.base import utcnow
from control_plane.db.engine import Database
from control_plane.errors import InvalidInput
from control_plane.ips import jobs, provider_ips, service, warmup
from control_plane.ips.models import IpAddress
from control_plane.provisioning.registry import ProviderRegistry
from control_plane.servers.models import Server
from control_plane.settings import Settings
from control_plane.vault.client import Vault
from tests.ips.addresses import fresh_addresses
from tests.support.rows import a_server_row, a_tenant

UTC = utcnow().tzinfo


def an_ip(**fields: object) -> IpAddress:
    return IpAddress(address="198.19.0.1", **fields)


def test_named_plans_ramp_geometrically_to_their_end() -> None:
    for name, days, first in (
        ("standard", 42, 50),
        ("conservative", 63, 20),
        ("aggressive", 25, 100),
    ):
        caps = warmup.PLANS[name].caps()
        assert (len(caps), caps[0], caps[-1]) == (days, first, 50_000)
        assert all(b > a for a, b in itertools.pairwise(caps))
    assert warmup.PLANS["standard"].caps()[:4] == (50, 59, 70, 83)


def test_today_cap_follows_the_plan_the_override_and_the_end() -> None:
    start = date(2026, 11, 1)
    ip = an_ip(warmup_plan="custom", warmup_start=start, warmup_caps="[10, 20, 0]")
    assert [warmup.today_cap(ip, start + timedelta(d)) for d in range(-1, 4)] == [
        10,
        10,
        20,
        0,
        None,
    ]
    assert warmup.finished(ip, start + timedelta(3)) and not warmup.finished(
        ip, start + timedelta(2)
    )
    ip.warmup_today_cap, ip.warmup_today_cap_day = 99, start + timedelta(1)
    assert warmup.today_cap(ip, start + timedelta(1)) == 99
    assert warmup.today_cap(ip, start + timedelta(2)) == 0  # one day only
    ip.warmup_done_at = datetime(2026, 11, 4, tzinfo=UTC)
    assert warmup.today_cap(ip, start) is None
    assert warmup.today_cap(an_ip(), start) is None


def test_custom_caps_are_checked() -> None:
    assert warmup.parse_custom([0, 5, 10]) == (0, 5, 10)
    for wrong, field in (([], "body.caps"), ([1, True], "body.caps.1"), ([1.5], "body.caps.0"),
                         (list(range(400)), "body.caps"), ("10,20", "body.caps")):  # fmt: skip
        with pytest.raises(InvalidInput) as caught:
            warmup.parse_custom(wrong)
        assert caught.value.field == field


async def ready_server(db: Database, ipv4: str, **fields: object) -> Server:
    tenant = await a_tenant(db, "ipjob")
    return await a_server_row(
        db, tenant, name="j", provider="manual", state="ready", ipv4=ipv4, **fields
    )


async def test_inventory_job_gives_older_servers_their_rows(db: Database) -> None:
    (address,) = fresh_addresses(1)
    server = await ready_server(db, address)
    async with db.session() as session:
        assert await service.live_ips(session, server.id) == []
    for _ in range(5):  # other tests' servers may come first; each round takes a batch
        await db.transact(provider_ips.adopt_unlisted)
        async with db.session() as session:
            if rows := await service.live_ips(session, server.id):
                break
    assert [(ip.address, ip.role, ip.dns_published) for ip in rows] == [(address, "sending", True)]
    # a second ready server claiming the same address does not take it (nor back and forth)
    twin = await ready_server(db, address)
    for _ in range(2):
        await db.transact(provider_ips.adopt_unlisted)
    async with db.session() as session:
        assert await service.live_ips(session, twin.id) == []
        assert [ip.id for ip in await service.live_ips(session, server.id)] == [rows[0].id]


async def test_provisioning_learns_the_addresses_and_the_ptr(
    db: Database, settings: Settings, vault: Vault
) -> None:
    (address,) = fresh_addresses(1)
    server = await ready_server(db, address)
    providers = ProviderRegistry(settings, vault)
    await provider_ips.learn_at_provisioning(db, providers, server)
    await provider_ips.record_ptr(db, server.id, address, "mx.example.com")
    async with db.session() as session:
        (ip,) = await service.live_ips(session, server.id)
        assert (ip.address, ip.ptr) == (address, "mx.example.com")
        assert [e.kind for e in await service.events(session, ip)] == ["ptr", "role", "assigned"]


async def test_warmup_job_finishes_plans_and_pushes_once_a_day(db: Database) -> None:
    address, extra = fresh_addresses(2)
    server = await ready_server(db, address, agent_state="enrolled")
    now = utcnow()
    async with db.session() as session:
        main, ip = await service.sync_server(session, server, [address, extra], now)
        ip.warmup_plan, ip.warmup_start = "custom", now.date() - timedelta(days=2)
        ip.warmup_caps = "[5, 6]"
        main.warmup_plan, main.warmup_start = "standard", now.date()
    first = await db.transact(jobs.warmup_job)
    assert first >= 2  # the finished plan, and this server's push
    async with db.session() as session:
        pushed = list(
            await session.scalars(
                select(Command).where(
                    Command.server_id == server.id, Command.kind == service.LIMITS_KIND
                )
            )
        )
        done = await session.get(IpAddress, ip.id)
        assert done is not None and done.warmup_done_at is not None
        assert next(e.detail for e in await service.events(session, done)).endswith(
            "done: no daily cap"
        )
    assert len(pushed) == 1
    assert json.loads(pushed[0].payload) == {
        "day": now.date().isoformat(),
        "limits": {
            address: {"cap": 50, "paused": False, "reason": ""},
            extra: {"cap": None, "paused": False, "reason": ""},
        },
    }
    await db.transact(jobs.warmup_job)
    async with db.session() as session:
        again = await session.scalars(
            select(Command.id).where(
                Command.server_id == server.id, Command.kind == service.LIMITS_KIND
            )
        )
        assert len(list(again)) == 1  # once per day


def test_day_prefix_matches_the_stored_payload() -> None:
    now = datetime(2026, 11, 30, 23, 59, tzinfo=UTC)
    stored = json.dumps({"limits": {}, "day": "2026-11-30"}, sort_keys=True, separators=(",", ":"))
    assert stored.startswith(jobs.day_prefix(now))
