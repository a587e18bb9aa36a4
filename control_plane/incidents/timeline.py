"""An incident's timeline: its own events, merged with the alerts' delivery log (one entry
per channel and notification, with the delivery's result) so nothing is recorded twice."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.alerts import service as alerts
from control_plane.incidents.models import Incident, IncidentEvent
from control_plane.incidents.schemas import TimelineEntryOut


def add_event(
    session: AsyncSession,
    incident: Incident,
    at: datetime,
    kind: str,
    detail: str = "",
    *,
    actor: str | None = None,
    step: int | None = None,
    notification_id: uuid.UUID | None = None,
) -> IncidentEvent:
    event = IncidentEvent(
        tenant_id=incident.tenant_id,
        incident_id=incident.id,
        at=at,
        kind=kind,
        detail=detail,
        actor=actor,
        step=step,
        notification_id=notification_id,
    )
    session.add(event)
    return event


def _delivery_entry(record: alerts.DeliveryRecord) -> TimelineEntryOut:
    if record.status == "quiet":
        kind, detail = "suppressed", f"quiet hours of channel {record.channel_name}"
    else:
        kind, detail = "notified", f"{record.event} to {record.channel_name}: {record.status}"
    return TimelineEntryOut(
        at=record.at,
        kind=kind,
        detail=detail,
        step=record.step,
        channel_id=record.channel_id,
        channel_name=record.channel_name,
        channel_kind=record.kind,
        event=record.event,
        status=record.status,
        attempts=record.attempts,
        last_error=record.last_error,
        delivered_at=record.delivered_at,
    )


async def timeline(session: AsyncSession, incident: Incident) -> list[TimelineEntryOut]:
    events = (
        await session.scalars(
            select(IncidentEvent)
            .where(IncidentEvent.incident_id == incident.id)
            .order_by(IncidentEvent.id)
        )
    ).all()
    entries = [TimelineEntryOut.model_validate(event) for event in events]
    deliveries = await alerts.deliveries_for_incident(session, incident.id)
    entries.extend(_delivery_entry(record) for record in deliveries)
    # Stable: an event and the deliveries it caused share a time; the event comes first.
    return sorted(entries, key=lambda entry: entry.at)
