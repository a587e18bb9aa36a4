"""What incidents tell the channels, through the alerts service: the grouped trigger, the
escalation steps and repeats, and the acknowledge and resolve that follow them.

All messages about one group share one ``dedup_key`` (the group's leading incident's id), so
PagerDuty's trigger, acknowledge and resolve refer to the same alert.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.alerts import service as alerts
from control_plane.incidents.models import OPEN_STATES, Incident
from control_plane.servers.models import Server

SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}


def worst(severities: Sequence[str]) -> alerts.Severity:
    top = max(severities, key=lambda s: SEVERITY_RANK.get(s, 0), default="info")
    return "critical" if top == "critical" else "warning" if top == "warning" else "info"


def channels_of(incident: Incident) -> list[uuid.UUID]:
    """Every channel told about the incident so far: acknowledge and resolve go to them."""
    return [uuid.UUID(c) for c in incident.notified_channels.split(",") if c]


def add_channels(incident: Incident, channel_ids: Sequence[uuid.UUID]) -> None:
    known = channels_of(incident)
    known.extend(c for c in channel_ids if c not in known)
    incident.notified_channels = ",".join(str(c) for c in known)


async def subject_name(session: AsyncSession, incident: Incident) -> str | None:
    if incident.server_id is None:
        return None
    server = await session.get(Server, incident.server_id)
    return server.name if server is not None else None


async def build(
    session: AsyncSession,
    event: alerts.Event,
    members: Sequence[Incident],
    now: datetime,
    *,
    actor: str | None = None,
) -> alerts.AlertMessage:
    """One message for a group told together, about its leader (the first): the group's
    dedup key stays the leader's id, so every later event of the group (acknowledge,
    resolve) lands on the same PagerDuty alert."""
    leader = members[0]
    name = await subject_name(session, leader)
    items = tuple(
        [
            alerts.AlertItem(
                incident_id=m.id,
                check=m.check,
                subject_kind=m.subject_kind,
                subject_id=m.subject_id,
                subject_name=name if m.server_id == leader.server_id else None,
                severity=m.severity,
                state=m.state,
                summary=m.summary,
            )
            for m in members
        ]
    )
    about = name or f"{leader.subject_kind} {leader.subject_id}"
    what = (
        f"{leader.check}: {leader.summary}"
        if len(members) == 1
        else (f"{len(members)} incidents ({', '.join(m.check for m in members)})")
    )
    prefix = {
        "trigger": "",
        "repeat": "Still open: ",
        "acknowledge": f"Acknowledged by {actor}: " if actor else "Acknowledged: ",
        "resolve": "Resolved: ",
        "test": "Test: ",
    }[event]
    return alerts.AlertMessage(
        event=event,
        tenant_id=leader.tenant_id,
        dedup_key=str(leader.group_key or leader.id),
        title=f"{prefix}{about}: {what}",
        severity=worst([m.severity for m in members]),
        items=items,
        at=now,
        actor=actor,
    )


async def group_of(session: AsyncSession, incident: Incident) -> list[Incident]:
    """Every incident that went out in the same notification, leader first."""
    if incident.group_key is None:
        return [incident]
    return list(
        (
            await session.scalars(
                select(Incident)
                .where(
                    Incident.tenant_id == incident.tenant_id,
                    Incident.group_key == incident.group_key,
                )
                .order_by(Incident.opened_at, Incident.id)
            )
        ).all()
    )


async def after_acknowledge(
    session: AsyncSession, incident: Incident, now: datetime, actor: str
) -> None:
    """Tell the channels told so far, once nothing in the group is left unacknowledged
    (PagerDuty's acknowledge covers the whole dedup key)."""
    members = await group_of(session, incident)
    if any(m.state == "open" for m in members):
        return
    await _tell_told(session, "acknowledge", members, now, actor)


async def after_resolve(
    session: AsyncSession, incident: Incident, now: datetime, actor: str | None
) -> None:
    """Tell the channels told so far, once the whole group is resolved."""
    members = await group_of(session, incident)
    if any(m.state in OPEN_STATES for m in members):
        return
    await _tell_told(session, "resolve", members, now, actor)


async def _tell_told(
    session: AsyncSession,
    event: alerts.Event,
    members: Sequence[Incident],
    now: datetime,
    actor: str | None,
) -> None:
    told: list[uuid.UUID] = []
    for m in members:
        told.extend(c for c in channels_of(m) if c not in told)
    if not told:
        return  # never notified (resolved inside its group window, or held back)
    message = await build(session, event, members, now, actor=actor)
    # The deliveries it makes show in each member's timeline (from the delivery log).
    await alerts.notify(session, message, told, step=None, now=now)
