"""The inventory service on both databases: sync, roles, pause/resume, limits pushed."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import select

from control_plane.commands.models import Command
from control_plane.db.base import utcnow
from control_plane.db.engine import Database
from control_plane.errors import InvalidInput, NotFound
from control_plane.incidents.models import Incident
from control_plane.ips import service
from control_plane.ips.models import IpAddress, IpEvent
from control_plane.mailstats.models import MailCount
from control_plane.servers.models import Server
from tests.ips.addresses import fresh_addresses
from tests.support.rows import a_server_row, a_tenant

NOON = datetime(2026, 11, 30, 12, 0, tzinfo=utcnow().tzinfo)


async def a_server(db: Database, ipv4: str | None = None) -> Server:
    tenant = await a_tenant(db, "ips")
    return await a_server_row(db, tenant, name="s1", provider="local", ipv4=ipv4, state="ready")


async def kinds(db: Database, ip: IpAddress) -> list[str]:
    async with db.session() as session:
        rows = await session.scalars(
            select(IpEvent.kind).where(IpEvent.ip_id == ip.id).order_by(IpEvent.at, IpEvent.kind)
        )
        return list(rows)


async def test_sync_makes_rows_main_sending_and_releases_what_left(db: Database) -> None:
    main, extra, third = fresh_addresses(3)
    server = await a_server(db, main)
    async with db.session() as session:
        assert await service.published_addresses(session, server) == (main,)
        live = await service.sync_server(session, server, [main, extra], NOON)
    assert [ip.address for ip in live] == [main, extra]
    assert (live[0].role, live[0].dns_published, live[0].is_main) == ("sending", True, True)
    assert (live[1].role, live[1].dns_published, live[1].is_main) == ("standby", False, False)
    async with db.session() as session:
        assert (await service.sending_ip(session, server.id)).address == main  # type: ignore[union-attr]
        assert await service.published_addresses(session, server) == (main,)
        again = await service.sync_server(session, server, [main, third], NOON + timedelta(1))
    assert [ip.address for ip in again] == [main, third]
    assert await kinds(db, live[1]) == ["assigned", "released"]
    assert await kinds(db, live[0]) == ["assigned", "role"]
    async with db.session() as session:
        released = await session.get(IpAddress, live[1].id)
        assert released is not None and released.released_at is not None
        # reassigned later: a new row, its own history
        back = await service.sync_server(session, server, [main, third, extra], NOON + timedelta(2))
    assert back[2].id != live[1].id
    assert await kinds(db, back[2]) == ["assigned"]


async def test_an_address_moved_to_another_server_ends_the_old_row(db: Database) -> None:
    (address,) = fresh_addresses(1)
    first, second = await a_server(db), await a_server(db)
    async with db.session() as session:
        (old,) = await service.sync_server(session, first, [address], NOON)
    async with db.session() as session:
        (new,) = await service.sync_server(session, second, [address], NOON)
        assert await service.live_ips(session, first.id) == []
    assert new.id != old.id and new.tenant_id == second.tenant_id
    assert await kinds(db, old) == ["assigned", "released", "role"]


async def test_get_live_and_bad_addresses(db: Database) -> None:
    (address,) = fresh_addresses(1)
    server = await a_server(db)
    async with db.session() as session:
        await service.sync_server(session, server, [address], NOON)
    async with db.session() as session:
        assert (await service.get_live(session, address)).server_id == server.id
        with pytest.raises(NotFound):
            await service.get_live(session, "198.51.100.250")
        with pytest.raises(InvalidInput) as malformed:
            await service.get_live(session, "nope")
        assert malformed.value.field == "path.ip"


async def limit_commands(db: Database, server: Server) -> list[Command]:
    async with db.session() as session:
        rows = await session.scalars(
            select(Command)
            .where(Command.server_id == server.id, Command.kind == service.LIMITS_KIND)
            .order_by(Command.created_at)
        )
        return list(rows)


async def test_pause_resume_push_limits_and_signal(db: Database) -> None:
    main, extra = fresh_addresses(2)
    server = await a_server(db, main)
    async with db.session() as session:
        live = await service.sync_server(session, server, [main, extra], NOON)
        ip = live[1]
        ip.warmup_plan, ip.warmup_start = "standard", date(2026, 11, 30)
        await service.push_limits(session, server, NOON)
        await service.push_limits(session, server, NOON)  # same payload still queued: one
    (first,) = await limit_commands(db, server)
    assert json.loads(first.payload) == {
        "day": "2026-11-30",
        "limits": {
            main: {"cap": None, "paused": False, "reason": ""},
            extra: {"cap": 50, "paused": False, "reason": ""},
        },
    }
    async with db.session() as session:
        ip = await service.get_live(session, main)
        assert await service.pause(session, ip, "listed on zen", service.AUTO, NOON)
        assert not await service.pause(session, ip, "again", "someone", NOON)
    commands = await limit_commands(db, server)
    assert len(commands) == 2
    assert json.loads(commands[1].payload)["limits"][main] == {
        "cap": None,
        "paused": True,
        "reason": "listed on zen",
    }
    async with db.session() as session:
        incident = await session.scalar(
            select(Incident).where(
                Incident.subject_kind == "ip",
                Incident.subject_id == main,
                Incident.check == service.PAUSED_CHECK,
            )
        )
        assert incident is not None and incident.state != "resolved"
        ip = await service.get_live(session, main)
        assert await service.resume(session, ip, "ops-key", NOON)
        assert not await service.resume(session, ip, "ops-key", NOON)
        await session.refresh(incident)
        assert incident.state == "resolved"
    assert await kinds(db, ip) == ["assigned", "paused", "resumed", "role"]


async def test_a_reached_cap_pauses_the_address_in_the_payload(db: Database) -> None:
    (main,) = fresh_addresses(1)
    server = await a_server(db, main)
    async with db.session() as session:
        (ip,) = await service.sync_server(session, server, [main], NOON)
        ip.warmup_plan, ip.warmup_start = "custom", date(2026, 11, 30)
        ip.warmup_caps = "[10, 20]"
        session.add(
            MailCount(
                tenant_id=server.tenant_id,
                server_id=server.id,
                day=date(2026, 11, 30),
                source_ip=main,
                sender_domain="example.com",
                sent=8,
                deferred=5,
                bounced=2,
            )
        )
        await session.flush()
        payload = await service.limits_payload(session, server, date(2026, 11, 30))
        assert payload["limits"] == {
            main: {"cap": 10, "paused": True, "reason": "daily cap reached (10/10)"}
        }
        payload = await service.limits_payload(session, server, date(2026, 12, 1))
        assert payload["limits"] == {main: {"cap": 20, "paused": False, "reason": ""}}
