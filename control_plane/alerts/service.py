"""Alerts service: which policy applies, recording notifications and their deliveries.

Incidents (area B) code against the dataclasses and functions here; the delivery job sends
what ``notify`` records after the caller's transaction commits.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

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


async def policy_for(
    session: AsyncSession,
    tenant_id: uuid.UUID | None,
    workspace_id: uuid.UUID | None,
    server_id: uuid.UUID | None,
) -> ResolvedPolicy | None:
    """Most specific wins: server > workspace > tenant default > fleet default."""
    raise NotImplementedError


async def notify(
    session: AsyncSession,
    message: AlertMessage,
    channel_ids: Sequence[uuid.UUID],
    *,
    step: int | None,
    now: datetime,
) -> uuid.UUID:
    """Record a notification and one delivery per channel in the caller's transaction."""
    raise NotImplementedError


async def deliveries_for_incident(
    session: AsyncSession, incident_id: uuid.UUID
) -> list[DeliveryRecord]:
    """Every delivery of every notification that named this incident, oldest first."""
    raise NotImplementedError
