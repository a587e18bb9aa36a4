"""The escalation engine with an injected clock: group window, steps, rounds, repeats,
acknowledge and resolve messages, and holds (the incident is recorded, nobody is told)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update

from control_plane.alerts.models import EscalationPolicy
from control_plane.db.engine import Database
from control_plane.incidents import escalation, service, silences
from control_plane.incidents.models import IncidentEvent, MaintenanceWindow, Silence
from control_plane.incidents.timeline import timeline
from tests.incidents.alerting import channel, policy, sent_about
from tests.incidents.helpers import (
    a_server,
    a_tenant,
    events_of,
    incidents_of,
    kinds,
    observe,
    open_incident,
    signal,
)

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
GROUP = 30.0


def at(seconds: float = 0, minutes: float = 0) -> datetime:
    return T0 + timedelta(seconds=seconds, minutes=minutes)


async def run(db: Database, tenant: uuid.UUID, now: datetime) -> int:
    """One round of the engine at ``now``; how many of this tenant's incidents it notified
    (other tests' incidents share the database and may be due too)."""
    async with db.session() as session:
        await escalation.escalate_due(session, now, group_seconds=GROUP)
        notified = await session.scalar(
            select(func.count()).where(
                IncidentEvent.tenant_id == tenant,
                IncidentEvent.at == now,
                IncidentEvent.kind.in_(("escalated", "repeat")),
            )
        )
        return int(notified or 0)


async def setup(
    db: Database, **policy_options: object
) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID, uuid.UUID]:
    """A tenant with a server and a two-step policy: first A, after 5 min B."""
    tenant = await a_tenant(db)
    server = await a_server(db, tenant)
    first, second = await channel(db, tenant, "A"), await channel(db, tenant, "B")
    await policy(db, tenant, [([first], 5), ([second], 5)], **policy_options)  # type: ignore[arg-type]
    return tenant, server, first, second


async def test_new_incidents_of_a_server_inside_the_window_go_out_together(db: Database) -> None:
    tenant, server, first, _ = await setup(db)
    await observe(db, at(0), signal(tenant, server, "smtp.25"))
    await observe(db, at(10), signal(tenant, server, "imap.993", severity="warning"))
    assert await run(db, tenant, at(29)) == 0  # the window is still open
    await observe(db, at(29), signal(tenant, server, "smtp.465"))  # just inside it
    assert await run(db, tenant, at(30)) == 3
    await observe(db, at(35), signal(tenant, server, "smtp.587"))  # after: a window of its own
    smtp25, imap, smtp465, smtp587 = await incidents_of(db, server)

    [together] = await sent_about(db, smtp25.id)
    assert together.checks == ["smtp.25", "imap.993", "smtp.465"]
    assert (together.event, together.step, together.channels) == ("trigger", 1, [first])
    assert together.dedup_key == str(smtp25.id)
    assert await sent_about(db, imap.id) == [together] == await sent_about(db, smtp465.id)
    assert await kinds(db, imap.id) == ["triggered", "grouped", "escalated"]
    assert "smtp.25, smtp.465" in (await events_of(db, imap.id))[1].detail

    assert await run(db, tenant, at(64)) == 0
    assert await run(db, tenant, at(65)) == 1
    [alone] = await sent_about(db, smtp587.id)
    assert alone.checks == ["smtp.587"] and alone.dedup_key == str(smtp587.id)

    other = await a_server(db, tenant, "mx2")  # another server never joins
    await observe(db, at(40), signal(tenant, other, "smtp.25"))
    assert await run(db, tenant, at(70)) == 1
    assert (await sent_about(db, (await open_incident(db, other, "smtp.25")).id))[0].checks == [
        "smtp.25"
    ]


async def test_steps_then_the_whole_policy_again_then_done(db: Database) -> None:
    tenant, server, first, second = await setup(db, repeat=1)
    await observe(db, at(0), signal(tenant, server, "agent.link"))
    start = at(30)
    expected = [(first, 1), (second, 2), (first, 1), (second, 2)]  # round 1, then round 2
    for index, (chan, step) in enumerate(expected):
        now = start + timedelta(minutes=5 * index)
        assert await run(db, tenant, now - timedelta(seconds=1)) == 0  # its wait is not over
        assert await run(db, tenant, now) == 1
        incident = await open_incident(db, server, "agent.link")
        assert (incident.escalation_step, incident.escalation_round) == (step, index // 2)
        assert incident.next_escalation_at == now + timedelta(minutes=5)
        assert (await sent_about(db, incident.id))[-1].channels == [chan]
    assert await run(db, tenant, start + timedelta(minutes=20)) == 0
    incident = await open_incident(db, server, "agent.link")
    assert incident.next_escalation_at is None  # no repeat interval: it has run out
    sent = await sent_about(db, incident.id)
    assert [(s.event, s.step) for s in sent] == [("trigger", 1), ("trigger", 2)] * 2
    assert len({s.dedup_key for s in sent}) == 1
    escalated = [e for e in await events_of(db, incident.id) if e.kind == "escalated"]
    assert [e.step for e in escalated] == [1, 2, 1, 2]
    assert "round 2 of 2" in escalated[2].detail

    async with db.session() as session:  # each channel's delivery is in the timeline
        entries = await timeline(session, incident)
    notified = [e for e in entries if e.kind == "notified"]
    assert [(e.channel_name, e.step, e.status) for e in notified] == [
        ("A", 1, "sent"),
        ("B", 2, "sent"),
        ("A", 1, "sent"),
        ("B", 2, "sent"),
    ]


async def acknowledge(
    db: Database, server: uuid.UUID, check: str, now: datetime, actor: str
) -> None:
    """Acknowledge the server's open ``check`` incident as the API does (locked first)."""
    async with db.session() as session:
        incident = await service.lock_incident(session, (await open_incident(db, server, check)).id)
        await service.acknowledge(session, incident, now, actor)


async def test_acknowledging_stops_escalation_and_tells_who_was_told(db: Database) -> None:
    tenant, server, first, _ = await setup(db, repeat=3, repeat_interval_minutes=1)
    await observe(db, at(0), signal(tenant, server, "smtp.25"))
    assert await run(db, tenant, at(30)) == 1
    await acknowledge(db, server, "smtp.25", at(60), "ops (key)")
    for minutes in (5, 10, 60):
        assert await run(db, tenant, at(30, minutes)) == 0
    incident = await open_incident(db, server, "smtp.25")
    assert incident.state == "acknowledged" and incident.next_escalation_at is None
    trigger, ack = await sent_about(db, incident.id)
    assert (ack.event, ack.actor, ack.channels) == ("acknowledge", "ops (key)", [first])
    assert ack.dedup_key == trigger.dedup_key  # PagerDuty acknowledges the same alert

    await observe(db, at(0, 70), signal(tenant, server, "smtp.25", "ok", "info"))
    *_, resolve = await sent_about(db, incident.id)
    assert (resolve.event, resolve.channels, resolve.dedup_key) == (
        "resolve",
        [first],
        trigger.dedup_key,
    )


async def test_acknowledging_one_incident_takes_the_whole_notification(db: Database) -> None:
    tenant, server, first, _ = await setup(db)
    await observe(db, at(0), signal(tenant, server, "smtp.25"))
    await observe(db, at(1), signal(tenant, server, "smtp.465"))
    assert await run(db, tenant, at(30)) == 2
    later = await a_server(db, tenant, "mx-later")  # notified on its own: not taken with them
    await observe(db, at(2), signal(tenant, later, "smtp.25"))
    assert await run(db, tenant, at(33)) == 1
    await acknowledge(db, server, "smtp.465", at(60), "ops (key)")
    smtp25 = await open_incident(db, server, "smtp.25")
    assert (smtp25.state, smtp25.acknowledged_by) == ("acknowledged", "ops (key)")
    assert "notified together with smtp.465" in (await events_of(db, smtp25.id))[-1].detail
    assert await run(db, tenant, at(30, 5)) == 0  # step 2 is never reached
    [trigger, ack] = await sent_about(db, smtp25.id)
    assert (trigger.event, ack.event, ack.channels) == ("trigger", "acknowledge", [first])
    assert (await open_incident(db, later, "smtp.25")).state == "open"


async def test_open_unacknowledged_incidents_are_renotified(db: Database) -> None:
    tenant = await a_tenant(db)
    server = await a_server(db, tenant)
    only = await channel(db, tenant, "ops")
    await policy(db, tenant, [([only], 1)], repeat_interval_minutes=3)
    await observe(db, at(0), signal(tenant, server, "mailu.queue", severity="warning"))
    assert await run(db, tenant, at(30)) == 1
    assert await run(db, tenant, at(30, 1)) == 1  # the last step's wait is over: repeat
    assert await run(db, tenant, at(30, 3.5)) == 0
    assert await run(db, tenant, at(30, 4)) == 1
    incident = await open_incident(db, server, "mailu.queue")
    sent = await sent_about(db, incident.id)
    assert [s.event for s in sent] == ["trigger", "repeat", "repeat"]
    assert all(s.channels == [only] for s in sent)
    assert await kinds(db, incident.id) == ["triggered", "escalated", "repeat", "repeat"]
    assert incident.next_escalation_at == at(30, 7)


async def test_auto_resolve_sends_a_resolve_to_every_channel_told(db: Database) -> None:
    tenant, server, first, second = await setup(db)
    await observe(
        db, at(0), signal(tenant, server, "smtp.25"), signal(tenant, server, "tls.expiry")
    )
    await run(db, tenant, at(30))
    await run(db, tenant, at(30, 5))  # step 2: both channels told now
    await observe(db, at(0, 7), signal(tenant, server, "smtp.25", "ok", "info"))
    smtp, _tls = await incidents_of(db, server)
    assert smtp.state == "resolved" and smtp.resolved_by == "auto"
    assert [s.event for s in await sent_about(db, smtp.id)] == ["trigger", "trigger"]  # group
    await observe(db, at(0, 8), signal(tenant, server, "tls.expiry", "ok", "info"))
    *_, resolve = await sent_about(db, smtp.id)
    assert resolve.event == "resolve" and sorted(resolve.channels) == sorted([first, second])
    assert resolve.checks == ["smtp.25", "tls.expiry"] and resolve.dedup_key == str(smtp.id)
    assert (await events_of(db, smtp.id))[-1].detail == "resolved automatically"
    assert await run(db, tenant, at(0, 20)) == 0  # resolving ended escalation

    await observe(db, at(0, 30), signal(tenant, server, "cpu"))  # a flap inside its window
    await observe(db, at(0, 30.2), signal(tenant, server, "cpu", "ok", "info"))
    assert await run(db, tenant, at(0, 31)) == 0
    assert await sent_about(db, (await incidents_of(db, server))[-1].id) == []


async def test_silences_and_maintenance_record_but_do_not_notify(db: Database) -> None:
    tenant, server, first, _ = await setup(db)
    async with db.session() as session:
        silence = Silence(
            tenant_id=tenant,
            check="disk.*",
            starts_at=at(0),
            ends_at=at(0, 60),
            created_by="ops (key)",
            comment="resizing",
        )
        session.add(silence)
        session.add(
            MaintenanceWindow(
                tenant_id=tenant,
                server_id=server,
                starts_at=at(0, 10),
                ends_at=at(0, 20),
                reason="reboot",
                created_by="ops (key)",
            )
        )
    await observe(db, at(0), signal(tenant, server, "disk./"), signal(tenant, server, "cpu"))
    assert await run(db, tenant, at(30)) == 1  # cpu goes out; disk./ is held
    disk = await open_incident(db, server, "disk./")
    assert await sent_about(db, disk.id) == []
    assert await kinds(db, disk.id) == ["triggered", "suppressed"]
    assert disk.suppressed_by is not None and "resizing" in disk.suppressed_by
    assert await run(db, tenant, at(60)) == 0
    assert await kinds(db, disk.id) == ["triggered", "suppressed"]  # said once

    await observe(db, at(0, 11), signal(tenant, server, "smtp.25"))
    assert await run(db, tenant, at(0, 12)) == 0  # the maintenance window holds it
    smtp = await open_incident(db, server, "smtp.25")
    assert "reboot" in (await events_of(db, smtp.id))[-1].detail
    assert await sent_about(db, smtp.id) == []
    cpu = await open_incident(db, server, "cpu")  # its step 2 was due: held as well
    assert await kinds(db, cpu.id) == ["triggered", "escalated", "suppressed"]
    assert await run(db, tenant, at(0, 20)) == 2  # the window is over: both go on
    assert [s.step for s in await sent_about(db, cpu.id)] == [1, 2]
    assert await kinds(db, smtp.id) == ["triggered", "suppressed", "released", "escalated"]

    async with db.session() as session:  # expiring the silence lets disk./ go out
        await silences.expire_silence(
            session, await silences.get_silence(session, silence.id), at(0, 21)
        )
    assert await run(db, tenant, at(0, 21)) == 1
    [sent] = await sent_about(db, disk.id)
    assert sent.checks == ["disk./"] and sent.channels == [first]


async def test_an_unreachable_server_inhibits_its_resource_and_mailu_alerts(db: Database) -> None:
    tenant, server, *_ = await setup(db)
    await observe(
        db,
        at(0),
        signal(tenant, server, "agent.link"),
        signal(tenant, server, "smtp.25"),
        signal(tenant, server, "disk./"),
        signal(tenant, server, "mailu.services"),
    )
    assert await run(db, tenant, at(30)) == 2
    link, _smtp, disk, mailu = await incidents_of(db, server)
    [sent] = await sent_about(db, link.id)
    assert sent.checks == ["agent.link", "smtp.25"]
    for held in (disk, mailu):
        assert await sent_about(db, held.id) == []
        assert (await events_of(db, held.id))[-1].detail.startswith(
            "notification held back: inhibited"
        )
        assert held.state == "open"  # recorded all the same


async def test_no_policy_is_said_in_the_timeline(db: Database) -> None:
    tenant = await a_tenant(db)
    server = await a_server(db, tenant)
    async with db.session() as session:  # a fleet default left by another test would apply
        fleet_defaults = (
            await session.scalars(
                update(EscalationPolicy)
                .where(EscalationPolicy.tenant_id.is_(None), EscalationPolicy.is_default.is_(True))
                .values(is_default=False)
                .returning(EscalationPolicy.id)
            )
        ).all()
    try:
        await observe(db, at(0), signal(tenant, server, "smtp.25"))
        assert await run(db, tenant, at(30)) == 0
        incident = await open_incident(db, server, "smtp.25")
        assert await kinds(db, incident.id) == ["triggered", "no_policy"]
        assert incident.next_escalation_at is None
        assert await run(db, tenant, at(0, 30)) == 0
        assert await kinds(db, incident.id) == ["triggered", "no_policy"]
    finally:
        if fleet_defaults:
            async with db.session() as session:
                await session.execute(
                    update(EscalationPolicy)
                    .where(EscalationPolicy.id.in_(fleet_defaults))
                    .values(is_default=True)
                )
