"""Alerts service: which policy applies, recording notifications and their deliveries.

Incidents (area B) code against the dataclasses and functions here; the delivery job sends
what ``notify`` records after the caller's transaction commits.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.alerts import channels, delivery, feed
from control_plane.alerts.models import (
    AlertChannel,
    AlertDelivery,
    AlertNotification,
    AlertNotificationIncident,
    EscalationPolicy,
)
from control_plane.alerts.owned import same_tenant
from control_plane.alerts.quiet import QuietHours
from control_plane.alerts.schemas import DeliveryOut
from control_plane.db.base import utcnow
from control_plane.db.engine import Database
from control_plane.periodic import nudge_after_commit
from control_plane.servers.models import Server
from control_plane.settings import Settings
from control_plane.vault.client import Vault
from control_plane.workspaces.models import Workspace

log = logging.getLogger(__name__)

Event = Literal["trigger", "repeat", "acknowledge", "resolve", "test"]
Severity = Literal["critical", "warning", "info"]
DeliveryStatus = Literal["queued", "sent", "retrying", "failed", "quiet"]


@dataclass(frozen=True)
class PolicyStep:
    """Notify these channels, then wait before the next step."""

    channel_ids: tuple[uuid.UUID, ...]
    wait_minutes: float


@dataclass(frozen=True)
class ResolvedPolicy:
    """The escalation policy that applies to one subject."""

    id: uuid.UUID
    name: str
    steps: tuple[PolicyStep, ...]
    repeat: int
    repeat_interval_minutes: float | None


@dataclass(frozen=True)
class AlertItem:
    """One incident inside a (possibly grouped) notification."""

    incident_id: uuid.UUID
    check: str
    subject_kind: str
    subject_id: str
    subject_name: str | None
    severity: str
    state: str
    summary: str


@dataclass(frozen=True)
class AlertMessage:
    """What to tell the channels; ``dedup_key`` is stable across trigger/ack/resolve."""

    event: Event
    tenant_id: uuid.UUID | None
    dedup_key: str
    title: str
    severity: Severity
    items: tuple[AlertItem, ...]
    at: datetime
    actor: str | None = None


@dataclass(frozen=True)
class DeliveryRecord:
    """One channel's delivery of one notification, for an incident's timeline."""

    at: datetime
    channel_id: uuid.UUID
    channel_name: str
    kind: str
    event: str
    step: int | None
    status: DeliveryStatus
    attempts: int
    last_error: str | None
    delivered_at: datetime | None


def message_payload(message: AlertMessage) -> dict[str, Any]:
    """The message as every channel receives it (webhook bodies are exactly this plus the
    notification and delivery ids)."""
    return {
        "event": message.event,
        "tenant_id": str(message.tenant_id) if message.tenant_id else None,
        "dedup_key": message.dedup_key,
        "title": message.title,
        "severity": message.severity,
        "at": message.at.isoformat(),
        "actor": message.actor,
        "items": [{**asdict(item), "incident_id": str(item.incident_id)} for item in message.items],
    }


def _resolved(policy: EscalationPolicy) -> ResolvedPolicy:
    steps = tuple(
        PolicyStep(
            channel_ids=tuple(uuid.UUID(c) for c in step["channel_ids"]),
            wait_minutes=float(step["wait_minutes"]),
        )
        for step in json.loads(policy.steps)
    )
    return ResolvedPolicy(
        id=policy.id,
        name=policy.name,
        steps=steps,
        repeat=policy.repeat,
        repeat_interval_minutes=policy.repeat_interval_minutes,
    )


async def effective_policy(
    session: AsyncSession,
    tenant_id: uuid.UUID | None,
    workspace_id: uuid.UUID | None,
    server_id: uuid.UUID | None,
) -> EscalationPolicy | None:
    """The policy row ``policy_for`` resolves to."""
    if server_id is not None:
        server = await session.get(Server, server_id)
        if server is not None:
            if server.escalation_policy_id is not None:
                return await session.get(EscalationPolicy, server.escalation_policy_id)
            workspace_id = workspace_id or server.workspace_id
    if workspace_id is not None:
        workspace = await session.get(Workspace, workspace_id)
        if workspace is not None and workspace.escalation_policy_id is not None:
            return await session.get(EscalationPolicy, workspace.escalation_policy_id)
    for owner in dict.fromkeys((tenant_id, None)):
        stmt = select(EscalationPolicy).where(EscalationPolicy.is_default.is_(True))
        stmt = stmt.where(same_tenant(EscalationPolicy.tenant_id, owner))
        found = await session.scalar(stmt.order_by(EscalationPolicy.id).limit(1))
        if found is not None:
            return found
    return None


async def policy_for(
    session: AsyncSession,
    tenant_id: uuid.UUID | None,
    workspace_id: uuid.UUID | None,
    server_id: uuid.UUID | None,
) -> ResolvedPolicy | None:
    """Most specific wins: server > workspace > tenant default > fleet default."""
    policy = await effective_policy(session, tenant_id, workspace_id, server_id)
    return _resolved(policy) if policy is not None else None


def _quiet(channel: AlertChannel, message: AlertMessage, now: datetime) -> bool:
    if message.event == "test" or not channel.quiet_hours:
        return False
    return QuietHours.from_json(json.loads(channel.quiet_hours)).covers(now, message.severity)


async def notify(
    session: AsyncSession,
    message: AlertMessage,
    channel_ids: Sequence[uuid.UUID],
    *,
    step: int | None,
    now: datetime,
) -> uuid.UUID:
    """Record a notification and one delivery per channel in the caller's transaction.

    A channel inside its quiet hours gets a ``quiet`` delivery (never sent); an in-app
    channel is delivered at once, quiet hours or not (the notification joins the feed, which
    wakes nobody); the others are ``queued`` for the delivery job, which sends them after
    the caller commits. Channels that no longer exist are skipped.
    """
    channels = await _existing_channels(session, channel_ids)
    notification = AlertNotification(
        tenant_id=message.tenant_id,
        created_at=now,
        event=message.event,
        dedup_key=message.dedup_key[:200],
        title=message.title[:500],
        severity=message.severity,
        body=json.dumps(message_payload(message)),
        step=step,
        in_app=False,
    )
    session.add(notification)
    await session.flush()
    nudge_after_commit(session)  # the delivery job sends it once this transaction commits
    for incident_id in dict.fromkeys(item.incident_id for item in message.items):
        session.add(
            AlertNotificationIncident(
                notification_id=notification.id,
                incident_id=incident_id,
                tenant_id=message.tenant_id,
            )
        )
    for channel in channels:
        notification.in_app = notification.in_app or channel.kind == "in_app"
        session.add(_delivery(notification, channel, message, now))
    await session.flush()
    return notification.id


async def _existing_channels(
    session: AsyncSession, channel_ids: Sequence[uuid.UUID]
) -> list[AlertChannel]:
    """The channels, in the order given, without repeats or deleted ones."""
    wanted = list(dict.fromkeys(channel_ids))
    found = await session.scalars(select(AlertChannel).where(AlertChannel.id.in_(wanted)))
    by_id = {channel.id: channel for channel in found}
    channels = [by_id[c] for c in wanted if c in by_id]
    if len(channels) < len(wanted):
        log.warning("notify: %d channel(s) no longer exist", len(wanted) - len(channels))
    return channels


def _delivery(
    notification: AlertNotification, channel: AlertChannel, message: AlertMessage, now: datetime
) -> AlertDelivery:
    """One channel's delivery: in-app is done at once (the feed pages nobody, so quiet hours
    do not hold it), a channel in its quiet hours is held, the rest are queued."""
    in_app = channel.kind == "in_app"
    quiet = not in_app and _quiet(channel, message, now)
    return AlertDelivery(
        tenant_id=message.tenant_id,
        notification_id=notification.id,
        channel_id=channel.id,
        channel_name=channel.name,
        kind=channel.kind,
        created_at=now,
        status="quiet" if quiet else "sent" if in_app else "queued",
        attempts=1 if in_app else 0,
        next_attempt_at=None if quiet or in_app else now,
        delivered_at=now if in_app else None,
    )


async def deliveries_for_incident(
    session: AsyncSession, incident_id: uuid.UUID
) -> list[DeliveryRecord]:
    """Every delivery of every notification that named this incident, oldest first."""
    rows = await session.execute(
        select(AlertDelivery, AlertNotification.event, AlertNotification.step)
        .join(AlertNotification, AlertNotification.id == AlertDelivery.notification_id)
        .join(
            AlertNotificationIncident,
            AlertNotificationIncident.notification_id == AlertNotification.id,
        )
        .where(AlertNotificationIncident.incident_id == incident_id)
        .order_by(AlertDelivery.created_at, AlertDelivery.id)
    )
    return [
        DeliveryRecord(
            at=delivery.created_at,
            channel_id=delivery.channel_id,
            channel_name=delivery.channel_name,
            kind=delivery.kind,
            event=event,
            step=step,
            status=delivery.status,  # type: ignore[arg-type]
            attempts=delivery.attempts,
            last_error=delivery.last_error,
            delivered_at=delivery.delivered_at,
        )
        for delivery, event, step in rows.all()
    ]


async def send_test(
    sessions: Callable[[], AbstractAsyncContextManager[AsyncSession]],
    db: Database,
    vault: Vault,
    settings: Settings,
    channel_id: uuid.UUID,
    actor: str | None,
) -> DeliveryOut:
    """Send a ``test`` message to one channel now (quiet hours do not apply) and return how
    it went; a failure is retried like any delivery. ``sessions`` opens the caller's
    sessions (a tenant key's see only its own channels; the API's and the CLI's are audited).
    """
    now = utcnow()
    async with sessions() as session:
        channel = await channels.get_channel(session, channel_id)
        message = AlertMessage(
            event="test",
            tenant_id=channel.tenant_id,
            dedup_key=f"mailfleet-test-{channel.id}",
            title=f"MailFleet test message for channel {channel.name!r}",
            severity="info",
            items=(),
            at=now,
            actor=actor,
        )
        notification_id = await notify(session, message, [channel.id], step=None, now=now)
        ids = await delivery.delivery_ids(session, notification_id)
    await delivery.deliver_due(db, vault, settings, now=now, delivery_ids=ids)
    async with sessions() as session:
        row = await feed.get_notification(session, notification_id)
        detail = await feed.notification_detail(session, row)
    return detail.deliveries[0]
