"""Mail counts on both databases: results replace days (twice the same → the same rows), the
bounce check signals and auto-pauses, the periodic job asks each server once at a time."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import date, timedelta
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import delete, select

from control_plane.commands import handlers
from control_plane.commands import service as commands
from control_plane.commands.models import Command
from control_plane.db.base import utcnow
from control_plane.db.engine import Database
from control_plane.incidents.models import Incident
from control_plane.ips import service as ips
from control_plane.ips.models import IpAddress
from control_plane.mailstats import results, schedule, service
from control_plane.mailstats.models import MailCount
from control_plane.servers.models import Server
from control_plane.settings import Settings
from tests.ips.addresses import fresh_addresses
from tests.support.rows import a_server_row, a_tenant

RULES = results.Rules(bounce_rate=0.05, min_messages=100, auto_pause=True)


async def a_server(db: Database, **fields: Any) -> Server:
    tenant = await a_tenant(db, "mailstats")
    return await a_server_row(
        db, tenant, name="m1", provider="local", state="ready", agent_state="enrolled", **fields
    )


async def with_ips(db: Database, count: int = 2) -> tuple[Server, list[IpAddress]]:
    addresses = fresh_addresses(count)
    server = await a_server(db, ipv4=addresses[0])
    async with db.session() as session:
        live = await ips.sync_server(session, server, addresses, utcnow())
    return server, live


def row(day: date, ip: str, domain: str, sent: int, deferred: int, bounced: int) -> dict[str, Any]:
    return {
        "day": day.isoformat(),
        "source_ip": ip,
        "sender_domain": domain,
        "sent": sent,
        "deferred": deferred,
        "bounced": bounced,
    }


async def settle(
    db: Database, server: Server, rows: list[dict[str, Any]], found: bool = True
) -> Command:
    """A mail.stats command queued and answered, through the command queue's own path."""
    async with db.session() as session:
        command = await commands.queue_system_command(
            session, server, results.KIND, {"since": "2026-11-29"}, 60
        )
    async with db.session() as session:
        known = await commands.record_result(
            session,
            server.id,
            command.id,
            "succeeded",
            json.dumps({"days": rows, "log": {"found": found, "lines_read": 7}}),
            None,
        )
        assert known
    return command


async def stored(db: Database, server: Server) -> list[tuple[Any, ...]]:
    async with db.session() as session:
        rows = await session.scalars(
            select(MailCount)
            .where(MailCount.server_id == server.id)
            .order_by(MailCount.day, MailCount.source_ip, MailCount.sender_domain)
        )
        return [
            (r.day, r.source_ip, r.sender_domain, r.sent, r.deferred, r.bounced, r.tenant_id)
            for r in rows
        ]


@pytest.fixture(autouse=True)
def rules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(results._rules, "value", RULES)


async def test_a_result_replaces_its_days_and_twice_changes_nothing(db: Database) -> None:
    server, (main, _) = await with_ips(db)
    today = utcnow().date()
    yesterday = today - timedelta(days=1)
    first = [
        row(yesterday, main.address, "example.com", 40, 2, 1),
        row(today, main.address, "example.com", 5, 0, 0),
        row(today, main.address, "Shop.Example", 3, 1, 0),
    ]
    await settle(db, server, first)
    once = await stored(db, server)
    await settle(db, server, first)  # delivered again (at least once)
    assert await stored(db, server) == once
    assert len(once) == 3 and {r[-1] for r in once} == {server.tenant_id}
    # Later the same day: today grows, yesterday is not in this report and stays.
    await settle(db, server, [row(today, main.address, "example.com", 9, 0, 1)])
    assert [r[:6] for r in await stored(db, server)] == [
        (yesterday, main.address, "example.com", 40, 2, 1),
        (today, main.address, "example.com", 9, 0, 1),
    ]
    async with db.session() as session:
        assert await service.sent_today(session, main, today) == 10  # sent + bounced
        assert await service.sent_today(session, main, yesterday) == 41


async def test_failed_or_malformed_results_change_nothing(db: Database) -> None:
    server, (main, _) = await with_ips(db)
    today = utcnow().date()
    await settle(db, server, [row(today, main.address, "example.com", 1, 0, 0)])
    before = await stored(db, server)
    await settle(db, server, [{"day": "yesterday", "source_ip": main.address}])
    async with db.session() as session:
        command = await commands.queue_system_command(session, server, results.KIND, {}, 60)
    async with db.session() as session:
        await commands.record_result(session, server.id, command.id, "failed", None, "boom")
    assert await stored(db, server) == before


async def incident(db: Database, ip: IpAddress) -> Incident | None:
    async with db.session() as session:
        return await session.scalar(
            select(Incident).where(
                Incident.subject_kind == "ip",
                Incident.subject_id == ip.address,
                Incident.check == results.BOUNCES_CHECK,
                Incident.state != "resolved",
            )
        )


async def test_bounce_rate_over_the_limit_pauses_the_address(db: Database) -> None:
    server, (main, standby) = await with_ips(db)
    today = utcnow().date()
    await settle(
        db,
        server,
        [
            row(today, main.address, "example.com", 150, 9, 6),
            row(today, main.address, "shop.example", 30, 0, 4),  # 10 of 190: 5.3 %
            row(today, standby.address, "example.com", 20, 0, 10),  # 33 % of only 30
            row(today - timedelta(days=1), main.address, "example.com", 0, 0, 500),
        ],
    )
    async with db.session() as session:
        paused = await session.get(IpAddress, main.id, populate_existing=True)
        quiet = await session.get(IpAddress, standby.id, populate_existing=True)
    assert paused is not None and paused.paused_by == "auto"
    assert paused.paused_reason == f"bounce rate 5.3 % over 190 messages on {today.isoformat()}"
    assert quiet is not None and quiet.paused_at is None
    opened = await incident(db, main)
    assert opened is not None and opened.server_id == server.id
    assert "5.3 %" in opened.summary and opened.tenant_id == server.tenant_id
    assert await incident(db, standby) is None
    async with db.session() as session:  # the pause reaches the agent's limits
        pushed = await session.scalar(
            select(Command).where(Command.server_id == server.id, Command.kind == ips.LIMITS_KIND)
        )
    assert pushed is not None and json.loads(pushed.payload)["limits"][main.address]["paused"]
    # The user resumes it knowing why: the next report (still over) does not pause it again.
    async with db.session() as session:
        row_ = await session.get(IpAddress, main.id)
        assert row_ is not None and await ips.resume(session, row_, "owner", utcnow())
    await settle(db, server, [row(today, main.address, "example.com", 150, 0, 12)])
    async with db.session() as session:
        again = await session.get(IpAddress, main.id, populate_existing=True)
    assert again is not None and again.paused_at is None
    # The day's figures fall back under the limit (more mail delivered): the check is ok.
    await settle(db, server, [row(today, main.address, "example.com", 400, 0, 10)])
    assert await incident(db, main) is None


async def test_too_few_messages_give_no_verdict(db: Database) -> None:
    """A day's first few messages neither fail nor clear the check: yesterday's incident
    stays open until the new day has enough mail to judge."""
    server, (main, _) = await with_ips(db)
    today = utcnow().date()
    tomorrow = today + timedelta(days=1)
    await settle(
        db,
        server,
        [row(today, main.address, "example.com", 150, 0, 50),
         row(tomorrow, main.address, "example.com", 10, 0, 0)],
    )  # fmt: skip
    assert await incident(db, main) is not None
    async with db.session() as session:
        row_ = await session.get(Server, server.id)
        assert row_ is not None
        judged = await results.check_bounces(session, row_, tomorrow, utcnow(), RULES)
    assert judged == [] and await incident(db, main) is not None


async def test_without_auto_pause_the_incident_opens_but_mail_flows(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(results._rules, "value", results.Rules(0.05, 100, auto_pause=False))
    server, (main, _) = await with_ips(db)
    await settle(db, server, [row(utcnow().date(), main.address, "example.com", 50, 0, 50)])
    async with db.session() as session:
        ip = await session.get(IpAddress, main.id, populate_existing=True)
    assert ip is not None and ip.paused_at is None
    assert await incident(db, main) is not None


def test_rules_follow_the_settings() -> None:
    rules = results.Rules.of(Settings(reputation_auto_pause="listing", reputation_bounce_rate=0.1))
    assert rules == results.Rules(bounce_rate=0.1, min_messages=100, auto_pause=False)


async def queued(db: Database, server: Server) -> list[Command]:
    async with db.session() as session:
        return list(
            await session.scalars(
                select(Command).where(Command.server_id == server.id, Command.kind == results.KIND)
            )
        )


@pytest_asyncio.fixture
async def others_untouched(db: Database) -> AsyncIterator[set[uuid.UUID]]:
    """The job asks every ready server of the shared database: the commands it queues for
    other tests' servers are removed afterwards (the test adds its own servers' ids)."""
    mine: set[uuid.UUID] = set()
    async with db.session() as session:
        before = set(await session.scalars(select(Command.id).where(Command.kind == results.KIND)))
    yield mine
    async with db.session() as session:
        await session.execute(
            delete(Command).where(
                Command.kind == results.KIND,
                Command.id.not_in(before),
                Command.server_id.not_in(mine),
            )
        )


async def test_the_job_asks_ready_servers_one_command_at_a_time(
    db: Database, others_untouched: set[uuid.UUID]
) -> None:
    settings = Settings(mail_stats_interval_seconds=3600, mail_stats_batch=10_000)
    job = schedule.job(settings)
    ready = await a_server(db)
    not_ready = await a_server(db, ipv4=None)
    others_untouched.update({ready.id, not_ready.id})
    async with db.session() as session:
        row_ = await session.get(Server, not_ready.id)
        assert row_ is not None
        row_.state = "provisioning"
    await db.transact(job)
    (first,) = await queued(db, ready)
    assert await queued(db, not_ready) == []
    yesterday = utcnow().date() - timedelta(days=1)
    assert json.loads(first.payload) == {"since": yesterday.isoformat()}
    await db.transact(job)  # still pending: not asked again
    assert len(await queued(db, ready)) == 1
    async with db.session() as session:
        await commands.record_result(session, ready.id, first.id, "succeeded", '{"days":[]}', None)
    await db.transact(job)  # settled, but asked in this interval already
    assert len(await queued(db, ready)) == 1
    # the next interval (a second long here) asks again
    fast = schedule.job(Settings(mail_stats_interval_seconds=0.001, mail_stats_batch=10_000))
    await db.transact(fast)
    assert len(await queued(db, ready)) == 2


def test_each_server_has_its_own_slot_so_a_fleet_is_asked_evenly() -> None:
    interval, start = 300.0, 1_800_000_000.0
    fleet = [uuid.uuid4() for _ in range(1000)]
    for server_id in fleet[:50]:  # one new slot per interval, for every server
        first = int(schedule.slot_key(server_id, start, interval).rsplit(":", 1)[1])
        later = int(schedule.slot_key(server_id, start + interval, interval).rsplit(":", 1)[1])
        assert later == first + 1
    # In any 30 s a tenth of the fleet falls due, not all of it at one slot's turn.
    turned = [
        s
        for s in fleet
        if schedule.slot_key(s, start, interval) != schedule.slot_key(s, start + 30, interval)
    ]
    assert 50 <= len(turned) <= 150, len(turned)


async def test_reporting_says_whether_the_figures_are_measured(db: Database) -> None:
    server, (main, _) = await with_ips(db)

    async def state(interval: float = 300) -> str:
        async with db.session() as session:
            return (await service.reporting(session, server.id, utcnow(), interval)).state

    assert await state() == "never"
    await settle(db, server, [], found=False)
    assert await state() == "no_log"
    await settle(db, server, [row(utcnow().date(), main.address, "example.com", 1, 0, 0)])
    assert await state() == "reporting"
    assert await state(interval=0.0001) == "stale"
    async with db.session() as session:
        command = await commands.queue_system_command(session, server, results.KIND, {}, 60)
    async with db.session() as session:
        await commands.record_result(
            session, server.id, command.id, "failed", None, "unknown command kind 'mail.stats'"
        )
        report = await service.reporting(session, server.id, utcnow(), 300)
    assert (report.state, report.error) == ("failing", "unknown command kind 'mail.stats'")
    await settle(db, server, [])
    assert await state() == "reporting"


async def test_a_pushed_report_is_stored_as_an_answer_and_a_garbled_one_changes_nothing(
    db: Database,
) -> None:
    """What an agent sends on its stream (capability ``mail_counts``) goes through the same
    store as a ``mail.stats`` answer, found by the gateway through the report registry."""
    server, (main, _) = await with_ips(db)
    today = utcnow().date()
    report = {
        "days": [row(today, main.address, "example.com", 7, 1, 0)],
        "log": {"found": True, "lines_read": 12},
    }
    assert handlers.handles_reports(results.REPORT_KIND)
    async with db.session() as session:
        await handlers.agent_report(session, results.REPORT_KIND, server.id, report)
    assert [r[:6] for r in await stored(db, server)] == [
        (today, main.address, "example.com", 7, 1, 0)
    ]
    garbled = {"days": [{"day": "yesterday"}], "log": {}}
    async with db.session() as session:
        await handlers.agent_report(session, results.REPORT_KIND, server.id, garbled)
        state = await service.reporting(session, server.id, utcnow(), 300)
    assert state.state == "failing" and "not understood" in (state.error or "")
    assert [r[:6] for r in await stored(db, server)] == [
        (today, main.address, "example.com", 7, 1, 0)
    ]


async def test_the_job_never_asks_an_agent_that_sends_its_counts_itself(
    db: Database, others_untouched: set[uuid.UUID]
) -> None:
    job = schedule.job(Settings(mail_stats_interval_seconds=3600, mail_stats_batch=10_000))
    pushing = await a_server(db, capabilities="commands,heartbeat,mail_counts,metrics")
    asked = await a_server(db, ipv4=None, capabilities="commands,heartbeat,metrics")
    others_untouched.update({pushing.id, asked.id})
    await db.transact(job)
    assert await queued(db, pushing) == []
    assert len(await queued(db, asked)) == 1
