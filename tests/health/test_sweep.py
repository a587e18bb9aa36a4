"""The sweep: slots spread over the interval, claims with leases (two sweepers never take
the same server), probes that time out are unknown, an agent's stream dropping makes its
server due at once, and MailU's status becomes results."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest_asyncio
from sqlalchemy import delete, select, update

from control_plane.commands import handlers
from control_plane.commands import service as commands
from control_plane.commands.models import Command
from control_plane.db.base import utcnow
from control_plane.db.engine import Database
from control_plane.health import hooks, schedule, service
from control_plane.health.models import HealthSchedule
from control_plane.health.probes import MailPorts
from control_plane.health.sweep import Checker, Sweep
from control_plane.incidents.models import Incident
from control_plane.servers.models import Server
from control_plane.settings import Settings
from tests.health.fleet import a_server, a_tenant, checks_by_name, fast_settings, plan

# Claims in these tests run on a clock far in the past: only the schedules they set up are
# due then, whatever other tests left in the shared database.
PAST = datetime(2001, 1, 1, tzinfo=UTC)
assert hooks  # registers the link and mailu.status handlers


async def due_servers(db: Database, count: int, **server: object) -> list[uuid.UUID]:
    async with db.session() as session:  # what earlier tests left due this early waits
        await session.execute(
            update(HealthSchedule)
            .where(HealthSchedule.next_run_at <= PAST + timedelta(days=1))
            .values(next_run_at=utcnow(), lease_owner=None, lease_expires_at=None)
        )
        while await schedule.ensure_schedules(session, utcnow()):
            pass  # other ready servers get a schedule (due now, never in the past)
    tenant_id = await a_tenant(db)
    ids = [await a_server(db, tenant_id, **server) for _ in range(count)]  # type: ignore[arg-type]
    async with db.session() as session:
        for server_id in ids:
            found = await session.get(Server, server_id)
            assert found is not None
            await schedule.ensure_row(session, found, PAST - timedelta(seconds=10))
    return ids


def test_slots_spread_over_the_interval_and_stay_put() -> None:
    interval = 300.0
    ids = [uuid.uuid4() for _ in range(2000)]
    offsets = [schedule.offset_seconds(i, interval) for i in ids]
    assert all(0 <= o < interval for o in offsets)
    per_minute = [sum(1 for o in offsets if m * 60 <= o < (m + 1) * 60) for m in range(5)]
    assert min(per_minute) > 300  # about 400 each: spread, not bunched
    after = datetime(2026, 11, 30, 12, 0, 7, tzinfo=UTC)
    for server_id in ids[:50]:
        slot = schedule.next_slot(server_id, after, interval)
        assert after < slot <= after + timedelta(seconds=interval)
        assert schedule.next_slot(server_id, slot - timedelta(microseconds=1), interval) == slot
        later = schedule.next_slot(server_id, slot, interval)
        assert later - slot == timedelta(seconds=interval)


async def test_two_sweepers_never_take_the_same_server(db: Database, settings: Settings) -> None:
    config = fast_settings(settings, health_lease_seconds=60)
    ids = set(await due_servers(db, 30))

    async def claim(owner: str) -> list[schedule.Claim]:
        async with db.session() as session:
            taken = await schedule.claim_due(session, owner, 20, PAST, config)
            await asyncio.sleep(0.2)  # hold the rows while the other sweeper looks
            return taken

    first, second = await asyncio.gather(claim("a"), claim("b"))
    a = {c.server_id for c in first}
    b = {c.server_id for c in second}
    assert a.isdisjoint(b)
    assert a | b == ids
    assert {len(a), len(b)} == {20, 10}

    async with db.session() as session:  # leased and moved on: nobody takes them again
        assert await schedule.claim_due(session, "c", 100, PAST, config) == []
        rows = (
            await session.scalars(select(HealthSchedule).where(HealthSchedule.server_id.in_(ids)))
        ).all()
    assert {r.lease_owner for r in rows} == {"a", "b"}
    assert all(r.next_run_at > PAST for r in rows)

    # Made due while a run holds it: taken once the lease ends, not before.
    one = next(iter(a))
    async with db.session() as session:
        server = await session.get(Server, one)
        assert server is not None
        await schedule.due_at(session, server, PAST)
    async with db.session() as session:
        assert await schedule.claim_due(session, "c", 100, PAST, config) == []
        await schedule.release(session, next(c for c in first if c.server_id == one), PAST)
    async with db.session() as session:
        again = await schedule.claim_due(session, "c", 100, PAST, config)
    assert [c.server_id for c in again] == [one]

    # A crashed replica's lease lapses: its servers are taken over when next due.
    later = PAST + timedelta(seconds=61 + config.health_interval_seconds)
    async with db.session() as session:
        taken = await schedule.claim_due(session, "d", 100, later, config)
    taken_ids = {c.server_id for c in taken}
    assert ids <= taken_ids


async def test_only_ready_servers_are_checked(db: Database, settings: Settings) -> None:
    config = fast_settings(settings)
    (ready,) = await due_servers(db, 1)
    tenant_id = await a_tenant(db)
    installing = await a_server(db, tenant_id, state="installing_mail")
    async with db.session() as session:
        found = await session.get(Server, installing)
        assert found is not None
        await schedule.ensure_row(session, found, PAST - timedelta(seconds=10))
        taken = await schedule.claim_due(session, "x", 100, PAST, config)
    assert [c.server_id for c in taken] == [ready]


async def test_a_server_just_ready_is_checked_at_once_then_in_its_slot(db: Database) -> None:
    server_id = await a_server(db, await a_tenant(db))
    now = utcnow()
    async with db.session() as session:
        await session.execute(delete(HealthSchedule).where(HealthSchedule.server_id == server_id))
        while await schedule.ensure_schedules(session, now):
            pass
        row = await session.get(HealthSchedule, server_id)
        assert row is not None and row.next_run_at == now  # not up to an interval away
    interval = 300.0
    slot = schedule.next_slot(server_id, now, interval)
    assert now < slot <= now + timedelta(seconds=interval)


@pytest_asyncio.fixture
async def silent_ports() -> AsyncIterator[MailPorts]:
    """Four ports that accept a connection and never say a word."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    servers = [await asyncio.start_server(hold, "127.0.0.1", 0) for _ in range(4)]
    ports = [s.sockets[0].getsockname()[1] for s in servers]
    yield MailPorts(smtp=ports[0], submissions=ports[1], submission=ports[2], imaps=ports[3])
    for writer in held:
        writer.close()
    for server in servers:
        server.close()
        await server.wait_closed()


async def test_a_probe_that_times_out_is_unknown(
    db: Database, settings: Settings, silent_ports: MailPorts
) -> None:
    config = fast_settings(settings, health_probe_timeout_seconds=0.3)
    server_id, = await due_servers(
        db, 1, mail_stack="mailu", ipv4="127.0.0.1", mail_hostname="mx.health.test",
        heartbeat=PAST,
    )  # fmt: skip
    checker = Checker(db, config, ports=silent_ports, clock=lambda: PAST)
    sweep = Sweep(db, config, checker)
    started = asyncio.get_running_loop().time()
    assert await sweep.run_once() == 1
    assert asyncio.get_running_loop().time() - started < 5
    found = await checks_by_name(db, server_id)
    for check in ("smtp.25", "smtp.465", "smtp.587", "imap.993"):
        assert found[check].state == "unknown", (check, found[check].detail)
        assert found[check].pending_state is None  # not a failure waiting for its re-check
    assert found["agent.link"].state == "ok"
    assert found["backup.none"].pending_state == "failing"  # a MailU server without backups
    async with db.session() as session:
        queued = (
            await session.scalars(
                select(Command).where(
                    Command.server_id == server_id, Command.kind == "mailu.status"
                )
            )
        ).all()
    assert len(queued) == 1 and queued[0].expires_at is not None
    row = await plan(db, server_id)
    assert row is not None and row.lease_owner is None and row.next_run_at > PAST


async def test_a_run_cut_short_by_its_lease_is_unknown(
    db: Database, settings: Settings, silent_ports: MailPorts
) -> None:
    config = fast_settings(settings, health_probe_timeout_seconds=30, health_lease_seconds=1)
    server_id, = await due_servers(
        db, 1, mail_stack="mailu", ipv4="127.0.0.1", mail_hostname="mx.health.test",
        heartbeat=PAST,
    )  # fmt: skip
    checker = Checker(db, config, ports=silent_ports, clock=lambda: PAST)
    async with db.session() as session:
        claims = await schedule.claim_due(session, checker.owner, 10, PAST, config)
    results = await checker.run(claims[0])
    cut = {r.check: r for r in results}
    assert cut["smtp.25"].state == "unknown" and "did not finish" in cut["smtp.25"].detail
    assert cut["dns.drift"].state == "unknown"
    assert (await checks_by_name(db, server_id))["tls.expiry"].state == "unknown"


async def test_an_agent_stream_dropping_makes_its_checks_run_at_once(
    db: Database, settings: Settings
) -> None:
    config = fast_settings(settings, health_interval_seconds=3600, health_flap_seconds=0.5)
    tenant_id = await a_tenant(db)
    server_id = await a_server(db, tenant_id, heartbeat=utcnow())
    checker = Checker(db, config)
    await checker.run_now(server_id)
    assert (await checks_by_name(db, server_id))["agent.link"].state == "ok"
    before = await plan(db, server_id)  # at its slot: anywhere in the coming hour
    assert before is not None and before.next_run_at > utcnow()

    woken = asyncio.Event()
    stop = schedule.on_due(woken.set)
    try:
        async with db.session() as session:
            await handlers.agent_event(session, handlers.AGENT_DISCONNECTED, server_id)
        await asyncio.wait_for(woken.wait(), 1)
    finally:
        stop()
    after = await plan(db, server_id)
    assert after is not None and after.agent_disconnected_at is not None
    assert after.next_run_at <= utcnow()  # due now, not at its slot
    assert after.next_run_at < before.next_run_at

    await checker.run_now(server_id)  # what the woken sweep does
    link = (await checks_by_name(db, server_id))["agent.link"]
    assert link.pending_state == "failing" and "dropped" in (link.pending_detail or "")
    await asyncio.sleep(0.6)
    await checker.run_now(server_id)  # the flap guard's re-check: still down, so it counts
    link = (await checks_by_name(db, server_id))["agent.link"]
    assert (link.state, link.severity) == ("failing", "critical")

    async with db.session() as session:  # back: a hello sets the heartbeat, then the event
        await session.execute(
            update(Server).where(Server.id == server_id).values(last_heartbeat_at=utcnow())
        )
        await handlers.agent_event(session, handlers.AGENT_CONNECTED, server_id)
    back = await plan(db, server_id)
    assert back is not None and back.agent_disconnected_at is None
    assert back.next_run_at <= utcnow()
    await checker.run_now(server_id)
    assert (await checks_by_name(db, server_id))["agent.link"].state == "ok"


async def test_a_silent_agent_is_down(db: Database, settings: Settings) -> None:
    config = fast_settings(settings)
    tenant_id = await a_tenant(db)
    stale = utcnow() - timedelta(seconds=config.agent_unknown_after_seconds + 5)
    server_id = await a_server(db, tenant_id, heartbeat=stale)
    results = {r.check: r for r in await Checker(db, config).run_now(server_id)}
    assert results["agent.link"].state == "failing"
    assert results["agent.link"].severity == "critical"
    assert "no heartbeat" in results["agent.link"].detail
    assert "backup.none" not in results  # no mail stack: nothing to back up
    assert not any(r.startswith(("smtp.", "imap.", "mailu.", "tls.")) for r in results)


async def settle_status(
    db: Database, server_id: uuid.UUID, result: dict[str, object] | None, state: str = "succeeded"
) -> None:
    async with db.session() as session:
        server = await session.get(Server, server_id)
        assert server is not None
        command = await commands.queue_system_command(session, server, "mailu.status", {}, 60)
        await commands.record_result(
            session,
            server_id,
            command.id,
            state,
            json.dumps(result) if result is not None else None,
            None if state == "succeeded" else "the agent is busy",
        )


async def test_mailu_status_becomes_services_and_queue_results(db: Database) -> None:
    service.configure(Settings(health_flap_seconds=0, mailu_queue_threshold=10))
    try:
        tenant_id = await a_tenant(db)
        server_id = await a_server(db, tenant_id, mail_stack="mailu")
        running = {"state": "running", "health": "healthy", "image": "mailu/front"}
        await settle_status(
            db,
            server_id,
            {"installed": True, "healthy": True, "queue_size": 3,
             "services": {"front": running, "smtp": running}},
        )  # fmt: skip
        found = await checks_by_name(db, server_id)
        assert found["mailu.services"].state == "ok"
        assert (found["mailu.queue"].state, found["mailu.queue"].observed) == ("ok", "3 messages")

        sick = {"state": "running", "health": "unhealthy", "image": "mailu/imap"}
        stopped = {"state": "exited", "health": "none", "image": "mailu/antispam"}
        await settle_status(
            db,
            server_id,
            {"installed": True, "healthy": False, "queue_size": 250,
             "services": {"front": running, "imap": sick, "antispam": stopped}},
        )  # fmt: skip
        found = await checks_by_name(db, server_id)
        services = found["mailu.services"]
        assert (services.state, services.severity) == ("failing", "critical")
        assert "antispam (exited)" in services.detail and "unhealthy: imap" in services.detail
        queue = found["mailu.queue"]
        assert (queue.state, queue.severity, queue.threshold) == (
            "failing",
            "warning",
            "at most 10 messages",
        )

        await settle_status(db, server_id, None, state="timed_out")
        found = await checks_by_name(db, server_id)
        assert found["mailu.services"].state == "unknown"
        assert found["mailu.queue"].state == "unknown"
    finally:
        service.configure(Settings())


async def test_the_loop_checks_due_servers_and_wakes_when_one_is_made_due(
    db: Database, settings: Settings
) -> None:
    # Only a wake explains a second run: the next slot is an hour away, the tick 30 s.
    config = fast_settings(settings, health_tick_seconds=30, health_interval_seconds=3600)
    (server_id,) = await due_servers(db, 1)
    ticks = iter(range(1_000_000))
    sweep = Sweep(
        db, config, Checker(db, config, clock=lambda: PAST + timedelta(milliseconds=next(ticks)))
    )

    async def finished_runs() -> datetime | None:
        row = await plan(db, server_id)
        return row.last_finished_at if row is not None else None

    async def wait_for_run(after: datetime | None) -> None:
        for _ in range(100):
            if (done := await finished_runs()) is not None and done != after:
                return
            await asyncio.sleep(0.05)
        raise AssertionError("the sweep did not check the server")

    task = asyncio.create_task(sweep.run())
    try:
        await wait_for_run(None)
        first = await finished_runs()
        assert (await checks_by_name(db, server_id))["agent.link"].last_run_at > PAST
        async with db.session() as session:
            server = await session.get(Server, server_id)
            assert server is not None
            await schedule.due_at(session, server, PAST)  # e.g. the flap guard's re-check
        await wait_for_run(first)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert not sweep._running


def closed_ports() -> MailPorts:
    """Four ports nothing listens on (each connect is refused)."""
    found = []
    for _ in range(4):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            found.append(probe.getsockname()[1])
    return MailPorts(smtp=found[0], submissions=found[1], submission=found[2], imaps=found[3])


async def test_a_refused_port_fails_and_counts_after_the_sweeps_recheck(
    db: Database, settings: Settings
) -> None:
    config = fast_settings(settings, health_interval_seconds=3600, health_flap_seconds=30)
    (server_id,) = await due_servers(
        db, 1, mail_stack="mailu", ipv4="127.0.0.1", mail_hostname="mx.health.test"
    )
    clock = [PAST]
    sweep = Sweep(db, config, Checker(db, config, ports=closed_ports(), clock=lambda: clock[0]))
    assert await sweep.run_once() == 1
    smtp = (await checks_by_name(db, server_id))["smtp.25"]
    assert smtp.pending_state == "failing" and "refused" in (smtp.pending_detail or "")
    row = await plan(db, server_id)
    slot = schedule.next_slot(server_id, PAST, 3600)
    assert row is not None and row.next_run_at == min(slot, PAST + timedelta(seconds=30))

    if slot > PAST + timedelta(seconds=29):
        clock[0] = PAST + timedelta(seconds=29)
        assert await sweep.run_once() == 0  # the re-check is not due yet
    clock[0] = PAST + timedelta(seconds=30)
    assert await sweep.run_once() == 1
    found = await checks_by_name(db, server_id)
    assert (found["smtp.25"].state, found["smtp.25"].severity) == ("failing", "critical")
    assert found["imap.993"].state == "failing"
    row = await plan(db, server_id)
    after = PAST + timedelta(seconds=30)
    assert row is not None and row.next_run_at == schedule.next_slot(server_id, after, 3600)
    async with db.session() as session:
        opened = (
            await session.scalars(
                select(Incident.check).where(
                    Incident.server_id == server_id, Incident.state != "resolved"
                )
            )
        ).all()
    assert "smtp.25" in opened
