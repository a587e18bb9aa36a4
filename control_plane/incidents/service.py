"""Incidents from signals: a failing signal opens (or updates) the one open incident of its
(subject, check); ok resolves it. People acknowledge, resolve and comment.

Notifications are not sent here: a new incident waits for its group window, and the
escalation job (escalation.py) sends it together with its server's other new incidents.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Select, and_, exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.base import utcnow
from control_plane.db.lookup import get_by_id
from control_plane.db.pagination import Page, paginate
from control_plane.errors import Conflict
from control_plane.incidents import messages
from control_plane.incidents.models import OPEN_STATES, Incident, IncidentEvent
from control_plane.incidents.schemas import (
    EscalationOut,
    IncidentDetailOut,
    IncidentOut,
)
from control_plane.incidents.signals import Signal
from control_plane.incidents.timeline import add_event, timeline
from control_plane.periodic import nudge_after_commit
from control_plane.servers.models import Server
from control_plane.workspaces.models import Workspace

AUTO = "auto"
ORPHAN_BATCH = 500  # incidents resolve_orphans closes a round; the rest wait for the next


def _counts_as_failing(signal: Signal) -> bool:
    return signal.state == "failing" or (
        signal.state == "unknown" and signal.severity == "critical"
    )


async def open_checks(
    session: AsyncSession, tenant_id: uuid.UUID, subject_kind: str, subject_id: str
) -> set[str]:
    """The checks of a subject with an incident not yet resolved."""
    found = await session.scalars(
        select(Incident.check).where(
            Incident.tenant_id == tenant_id,
            Incident.subject_kind == subject_kind,
            Incident.subject_id == subject_id,
            Incident.state.in_(OPEN_STATES),
        )
    )
    return set(found.all())


async def find_open(
    session: AsyncSession, tenant_id: uuid.UUID, subject_kind: str, subject_id: str, check: str
) -> Incident | None:
    """The open incident of this key, locked: a signal updates it rather than opening a
    second one (the database's partial unique index refuses that anyway)."""
    found: Incident | None = await session.scalar(
        select(Incident)
        .where(
            Incident.tenant_id == tenant_id,
            Incident.subject_kind == subject_kind,
            Incident.subject_id == subject_id,
            Incident.check == check,
            Incident.state.in_(OPEN_STATES),
        )
        .with_for_update()
    )
    return found


async def observe(session: AsyncSession, signals: Sequence[Signal], now: datetime) -> None:
    """Turn confirmed signals into incidents in the caller's transaction."""
    for signal in signals:
        if signal.state == "ok":
            found = await find_open(
                session, signal.tenant_id, signal.subject_kind, signal.subject_id, signal.check
            )
            if found is not None:
                await resolve(session, found, now, actor=None, detail="resolved automatically")
        elif _counts_as_failing(signal):
            await _open_or_update(session, signal, now)
        # any other unknown: could not check, which says nothing either way


async def _open_or_update(session: AsyncSession, signal: Signal, now: datetime) -> Incident:
    key = (signal.tenant_id, signal.subject_kind, signal.subject_id, signal.check)
    incident = await find_open(session, *key)
    server_id = signal.server_id
    if server_id is None and signal.subject_kind == "server":  # grouping and holds need it
        with contextlib.suppress(ValueError):
            server_id = uuid.UUID(signal.subject_id)
    if incident is None:
        incident = Incident(
            tenant_id=signal.tenant_id,
            subject_kind=signal.subject_kind,
            subject_id=signal.subject_id,
            check=signal.check,
            state="open",
            severity=signal.severity,
            summary=signal.summary,
            server_id=server_id,
            workspace_id=signal.workspace_id,
            opened_at=min(signal.since or now, now),
            last_seen_at=now,
            next_escalation_at=now,  # its group window runs from opened_at
            escalation_round=0,
            notified_channels="",
        )
        try:
            async with session.begin_nested():
                session.add(incident)
                await session.flush()
        except IntegrityError:  # another transaction opened it first: update that one
            incident = await find_open(session, *key)
            if incident is None:
                raise
        else:
            state = "unknown (could not check)" if signal.state == "unknown" else "failing"
            add_event(session, incident, now, "triggered", f"{state}: {signal.summary}")
            nudge_after_commit(session)  # the escalation job looks at it after the commit
            return incident
    incident.last_seen_at = now
    incident.summary = signal.summary
    rank = messages.SEVERITY_RANK
    if rank.get(signal.severity, 0) > rank.get(incident.severity, 0):
        add_event(
            session, incident, now, "updated", f"severity {incident.severity} → {signal.severity}"
        )
        incident.severity = signal.severity
    return incident


async def resolve(
    session: AsyncSession,
    incident: Incident,
    now: datetime,
    *,
    actor: str | None,
    detail: str,
    reason: str | None = None,
) -> Incident:
    """Resolve (``actor`` None: automatically); ends escalation; the channels told of it get
    a resolve once its whole group is resolved."""
    if incident.state == "resolved":
        raise Conflict(f"incident {incident.id} is already resolved")
    incident.state = "resolved"
    incident.resolved_at = now
    incident.resolved_by = actor or AUTO
    incident.resolution = reason
    incident.next_escalation_at = None
    add_event(session, incident, now, "resolved", detail, actor=actor)
    await session.flush()
    await messages.after_resolve(session, incident, now, actor)
    return incident


async def resolve_by(
    session: AsyncSession, incident: Incident, now: datetime, actor: str
) -> Incident:
    """Resolved by a person (the API's key, the CLI's user)."""
    return await resolve(session, incident, now, actor=actor, detail=f"resolved by {actor}")


async def acknowledge(
    session: AsyncSession, incident: Incident, now: datetime, actor: str
) -> Incident:
    """Stop escalating it and the open incidents notified with it (whoever takes a
    notification takes all it named, as PagerDuty's acknowledge covers its whole dedup key);
    the channels told so far hear who took it. Acknowledging twice is a no-op; a resolved
    incident cannot be."""
    if incident.state == "resolved":
        raise Conflict(f"incident {incident.id} is already resolved")
    if incident.state == "acknowledged":
        return incident
    members = [m.id for m in await messages.group_of(session, incident) if m.id != incident.id]
    siblings = (
        await session.scalars(
            select(Incident)
            .where(Incident.id.in_(members), Incident.state == "open")
            .order_by(Incident.opened_at, Incident.id)
            .with_for_update()
        )
    ).all()
    for member in (incident, *siblings):
        member.state = "acknowledged"
        member.acknowledged_at = now
        member.acknowledged_by = actor
        member.next_escalation_at = None
        detail = f"acknowledged by {actor}"
        if member is not incident:
            detail += f" (notified together with {incident.check})"
        add_event(session, member, now, "acknowledged", detail, actor=actor)
    await session.flush()
    await messages.after_acknowledge(session, incident, now, actor)
    return incident


async def comment(
    session: AsyncSession, incident: Incident, now: datetime, actor: str, body: str
) -> IncidentEvent:
    event = add_event(session, incident, now, "commented", body, actor=actor)
    await session.flush()
    return event


async def get_incident(session: AsyncSession, incident_id: uuid.UUID) -> Incident:
    return await get_by_id(session, Incident, incident_id, "incident")


async def lock_incident(session: AsyncSession, incident_id: uuid.UUID) -> Incident:
    """The incident, locked against the escalation job for the rest of the transaction."""
    found: Incident | None = await session.scalar(
        select(Incident).where(Incident.id == incident_id).with_for_update()
    )
    if found is None:
        await get_by_id(session, Incident, incident_id, "incident")  # raises the 404
    assert found is not None
    return found


async def list_incidents(
    session: AsyncSession,
    *,
    state: str | None,
    server_id: uuid.UUID | None,
    after: uuid.UUID | None,
    limit: int,
    newest_first: bool = False,
    tenant_id: uuid.UUID | None = None,
) -> Page[Incident]:
    stmt: Select[tuple[Incident]] = select(Incident)
    if tenant_id is not None:
        stmt = stmt.where(Incident.tenant_id == tenant_id)
    if state is not None:
        stmt = stmt.where(Incident.state == state)
    if server_id is not None:
        stmt = stmt.where(Incident.server_id == server_id)
    return await paginate(session, stmt, Incident.id, after, limit, newest_first=newest_first)


async def resolve_orphans(session: AsyncSession, now: datetime | None = None) -> int:
    """Open incidents whose server or workspace no longer exists resolve, saying so (up to
    ORPHAN_BATCH a round, so deleting a large workspace is not one long transaction)."""
    now = now or utcnow()
    server_gone = and_(
        Incident.server_id.is_not(None), ~exists().where(Server.id == Incident.server_id)
    )
    workspace_gone = and_(
        Incident.subject_kind == "workspace",
        Incident.workspace_id.is_not(None),
        ~exists().where(Workspace.id == Incident.workspace_id),
    )
    orphans = (
        await session.scalars(
            select(Incident)
            .where(Incident.state.in_(OPEN_STATES), server_gone | workspace_gone)
            .limit(ORPHAN_BATCH)
            .with_for_update(skip_locked=True)
        )
    ).all()
    for incident in orphans:
        what = "server" if incident.server_id is not None else "workspace"
        reason = f"the {what} no longer exists"
        await resolve(
            session, incident, now, actor=None, detail=f"resolved: {reason}", reason=reason
        )
    return len(orphans)


def incident_out(incident: Incident) -> IncidentOut:
    """The incident as the API and the CLI show it."""
    return IncidentOut.model_validate(
        {
            **{c: getattr(incident, c) for c in IncidentOut.model_fields if c != "escalation"},
            "escalation": EscalationOut(
                policy_id=incident.policy_id,
                step=incident.escalation_step,
                round=incident.escalation_round,
                next_at=incident.next_escalation_at,
                last_notified_at=incident.last_notified_at,
                channel_ids=messages.channels_of(incident),
                held_back_by=incident.suppressed_by,
            ),
        }
    )


async def detail_out(session: AsyncSession, incident: Incident) -> IncidentDetailOut:
    entries = await timeline(session, incident)
    return IncidentDetailOut(**incident_out(incident).model_dump(), timeline=entries)
