"""Channels and escalation policies made straight in the database (the alerts API is area
C's and tested there), and reading back what incidents told them."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from control_plane.alerts.models import (
    AlertChannel,
    AlertDelivery,
    AlertNotification,
    AlertNotificationIncident,
    EscalationPolicy,
)
from control_plane.db.engine import Database


async def channel(db: Database, tenant_id: uuid.UUID | str, name: str) -> uuid.UUID:
    async with db.session() as session:
        made = AlertChannel(
            tenant_id=uuid.UUID(str(tenant_id)), name=name, kind="in_app", config="{}"
        )
        session.add(made)
        await session.flush()
        return made.id


async def policy(
    db: Database,
    tenant_id: uuid.UUID | str,
    steps: list[tuple[list[uuid.UUID], float]],
    *,
    repeat: int = 0,
    repeat_interval_minutes: float | None = None,
) -> uuid.UUID:
    async with db.session() as session:
        made = EscalationPolicy(
            tenant_id=uuid.UUID(str(tenant_id)),
            name="default",
            steps=json.dumps(
                [{"channel_ids": [str(c) for c in ids], "wait_minutes": w} for ids, w in steps]
            ),
            repeat=repeat,
            repeat_interval_minutes=repeat_interval_minutes,
            is_default=True,
        )
        session.add(made)
        await session.flush()
        return made.id


@dataclass(frozen=True)
class Sent:
    """One notification about an incident, with the channels it went to."""

    event: str
    step: int | None
    dedup_key: str
    checks: list[str]
    actor: str | None
    channels: list[uuid.UUID]
    statuses: list[str]


async def sent_about(db: Database, incident_id: uuid.UUID) -> list[Sent]:
    async with db.session() as session:
        notifications = (
            await session.scalars(
                select(AlertNotification)
                .join(
                    AlertNotificationIncident,
                    AlertNotificationIncident.notification_id == AlertNotification.id,
                )
                .where(AlertNotificationIncident.incident_id == incident_id)
                .order_by(AlertNotification.id)
            )
        ).all()
        out = []
        for n in notifications:
            deliveries = (
                await session.scalars(
                    select(AlertDelivery)
                    .where(AlertDelivery.notification_id == n.id)
                    .order_by(AlertDelivery.id)
                )
            ).all()
            body: dict[str, Any] = json.loads(n.body)
            out.append(
                Sent(
                    event=n.event,
                    step=n.step,
                    dedup_key=n.dedup_key,
                    checks=[item["check"] for item in body["items"]],
                    actor=body.get("actor"),
                    channels=[d.channel_id for d in deliveries],
                    statuses=[d.status for d in deliveries],
                )
            )
        return out
