"""The escalation engine, a periodic job: due incidents are claimed (``FOR UPDATE SKIP
LOCKED`` on PostgreSQL), held back if a silence, maintenance window or inhibition says so,
and otherwise moved on along their escalation policy.

A new incident waits for its group window (MAILFLEET_INCIDENT_GROUP_SECONDS); every new
incident of the same server (or subject) opened inside that window goes out in the same
notification. Then step 1 is notified, and after its ``wait_minutes`` without an
acknowledgement step 2, and so on; after the last step the whole policy runs again up to
``repeat`` more times, and after that an open incident is re-notified every
``repeat_interval_minutes`` (if set). Every function takes ``now``: tests drive time.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.alerts import service as alerts
from control_plane.db.base import utcnow
from control_plane.incidents import messages, suppression
from control_plane.incidents.models import Incident
from control_plane.incidents.timeline import add_event
from control_plane.settings import Settings

HOLD_LENGTH = 300  # Incident.suppressed_by


def job(settings: Settings) -> Callable[[AsyncSession], Awaitable[int]]:
    async def run(session: AsyncSession) -> int:
        return await escalate_due(session, utcnow(), group_seconds=settings.incident_group_seconds)

    return run


@dataclass(frozen=True)
class Plan:
    event: alerts.Event
    step: int  # 1-based, as the timeline and the delivery log show it
    round: int  # 0: the policy's first run
    channel_ids: tuple[uuid.UUID, ...]
    wait: timedelta


async def escalate_due(session: AsyncSession, now: datetime, *, group_seconds: float) -> int:
    """Move every due incident one step; how many incidents were notified."""
    window = timedelta(seconds=group_seconds)
    due = (
        await session.scalars(
            select(Incident)
            .where(
                Incident.state == "open",
                Incident.next_escalation_at <= now,
                or_(Incident.escalation_step.is_not(None), Incident.opened_at <= now - window),
            )
            .order_by(Incident.opened_at, Incident.id)
            .with_for_update(skip_locked=True)
        )
    ).all()
    done: set[uuid.UUID] = set()
    moved = 0
    for incident in due:
        if incident.id in done:
            continue
        if incident.escalation_step is None and incident.group_key is None:
            members = await _new_group(session, incident, window, done)
        else:
            members = [
                m
                for m in due
                if m.id not in done
                and m.group_key == incident.group_key
                and (m.escalation_step, m.escalation_round)
                == (incident.escalation_step, incident.escalation_round)
            ]
        done.update(m.id for m in members)
        moved += await _advance(session, members, now)
    await session.flush()
    return moved


async def _new_group(
    session: AsyncSession, leader: Incident, window: timedelta, done: set[uuid.UUID]
) -> list[Incident]:
    """The leader and the other new incidents of its server (or subject) opened within its
    group window."""
    if leader.server_id is not None:
        same_subject = Incident.server_id == leader.server_id
    else:
        same_subject = and_(
            Incident.server_id.is_(None),
            Incident.subject_kind == leader.subject_kind,
            Incident.subject_id == leader.subject_id,
        )
    others = (
        await session.scalars(
            select(Incident)
            .where(
                Incident.tenant_id == leader.tenant_id,
                Incident.id != leader.id,
                Incident.state == "open",
                Incident.escalation_step.is_(None),
                Incident.group_key.is_(None),
                Incident.next_escalation_at.is_not(None),
                Incident.opened_at <= leader.opened_at + window,
                same_subject,
            )
            .order_by(Incident.opened_at, Incident.id)
            .with_for_update(skip_locked=True)
        )
    ).all()
    return [leader, *(m for m in others if m.id not in done)]


async def _sendable(
    session: AsyncSession, members: Sequence[Incident], now: datetime
) -> list[Incident]:
    """Members nothing holds back; the held ones say why in their timeline (once per
    reason) and are looked at again next round."""
    free = []
    for m in members:
        held = await suppression.hold(session, m, now)
        if held is None:
            if m.suppressed_by is not None:
                add_event(session, m, now, "released", f"no longer held back ({m.suppressed_by})")
                m.suppressed_by = None
            free.append(m)
            continue
        held = held[:HOLD_LENGTH]
        if m.suppressed_by != held:
            add_event(session, m, now, "suppressed", f"notification held back: {held}")
            m.suppressed_by = held
        m.next_escalation_at = now
    return free


def plan(policy: alerts.ResolvedPolicy, incident: Incident) -> Plan | None:
    """What to send next for an incident at (step, round) of this policy; None: done."""
    steps, step, rnd = policy.steps, incident.escalation_step, incident.escalation_round
    if step is None:
        target, rnd = 1, 0
    elif step < len(steps):
        target = step + 1
    elif rnd < policy.repeat:
        target, rnd = 1, rnd + 1
    elif policy.repeat_interval_minutes is not None:
        told = tuple(messages.channels_of(incident))
        wait = timedelta(minutes=policy.repeat_interval_minutes)
        return Plan("repeat", step, rnd, told, wait)
    else:
        return None
    chosen = steps[target - 1]
    return Plan("trigger", target, rnd, chosen.channel_ids, timedelta(minutes=chosen.wait_minutes))


async def _advance(session: AsyncSession, members: Sequence[Incident], now: datetime) -> int:
    sendable = await _sendable(session, members, now)
    if not sendable:
        return 0
    leader = sendable[0]
    if leader.escalation_step is None:
        for m in sendable:
            m.group_key = leader.id
        if len(sendable) > 1:
            for m in sendable:
                others = ", ".join(o.check for o in sendable if o is not m)
                add_event(session, m, now, "grouped", f"notified together with {others}")
    policy = await alerts.policy_for(
        session, leader.tenant_id, leader.workspace_id, leader.server_id
    )
    if policy is None or not policy.steps:
        for m in sendable:
            add_event(session, m, now, "no_policy", "no escalation policy: no channel notified")
            m.next_escalation_at = None
        return 0
    todo = plan(policy, leader)
    if todo is None:
        for m in sendable:
            m.next_escalation_at = None
        return 0
    message = await messages.build(session, todo.event, sendable, now)
    notification = await alerts.notify(session, message, todo.channel_ids, step=todo.step, now=now)
    if todo.event == "repeat":
        kind, detail = "repeat", f"re-notified {len(todo.channel_ids)} channel(s): still open"
    else:
        again = f", round {todo.round + 1} of {policy.repeat + 1}" if todo.round else ""
        kind = "escalated"
        detail = (
            f"step {todo.step} of {len(policy.steps)} of policy '{policy.name}'{again}: "
            f"{len(todo.channel_ids)} channel(s)"
        )
    for m in sendable:
        m.policy_id = policy.id
        m.escalation_step = todo.step
        m.escalation_round = todo.round
        m.last_notified_at = now
        m.next_escalation_at = now + todo.wait
        messages.add_channels(m, todo.channel_ids)
        add_event(session, m, now, kind, detail, step=todo.step, notification_id=notification)
    return len(sendable)


def next_due_job(settings: Settings) -> Callable[[AsyncSession], Awaitable[datetime | None]]:
    """When the next open incident falls due (its group window closes or its step's wait
    ends), so the periodic runner wakes then rather than at its next tick."""
    window = timedelta(seconds=settings.incident_group_seconds)

    async def next_due(session: AsyncSession) -> datetime | None:
        now = utcnow()
        pending = (
            await session.execute(
                select(Incident.next_escalation_at, Incident.opened_at, Incident.escalation_step)
                .where(Incident.state == "open", Incident.next_escalation_at > now - window)
                .order_by(Incident.next_escalation_at)
                .limit(100)
            )
        ).all()
        dues = [
            due if step is not None else max(due, opened + window)
            for due, opened, step in pending
            if due is not None
        ]
        ahead = [d for d in dues if d > now]
        return min(ahead) if ahead else None

    return next_due
