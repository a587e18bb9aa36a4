"""Notifications as people read them: the in-app feed and each one's delivery log."""

from __future__ import annotations

import json
import uuid
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.alerts.models import AlertDelivery, AlertDeliveryAttempt, AlertNotification
from control_plane.alerts.owned import same_tenant
from control_plane.alerts.schemas import (
    AttemptOut,
    DeliveryOut,
    NotificationDetail,
    NotificationOut,
)
from control_plane.db.lookup import get_by_id
from control_plane.db.pagination import Page, paginate


def notification_out(row: AlertNotification) -> NotificationOut:
    return NotificationOut(
        id=row.id,
        tenant_id=row.tenant_id,
        created_at=row.created_at,
        event=row.event,
        dedup_key=row.dedup_key,
        title=row.title,
        severity=row.severity,
        step=row.step,
        in_app=row.in_app,
        read_at=row.read_at,
        failed_at=row.failed_at,
        body=json.loads(row.body),
    )


async def delivery_out(session: AsyncSession, delivery: AlertDelivery) -> DeliveryOut:
    attempts = await session.scalars(
        select(AlertDeliveryAttempt)
        .where(AlertDeliveryAttempt.delivery_id == delivery.id)
        .order_by(AlertDeliveryAttempt.id)
    )
    return DeliveryOut(
        id=delivery.id,
        notification_id=delivery.notification_id,
        channel_id=delivery.channel_id,
        channel_name=delivery.channel_name,
        kind=delivery.kind,
        status=delivery.status,
        attempts=delivery.attempts,
        next_attempt_at=delivery.next_attempt_at if delivery.status == "retrying" else None,
        last_error=delivery.last_error,
        last_status_code=delivery.last_status_code,
        delivered_at=delivery.delivered_at,
        created_at=delivery.created_at,
        attempt_log=[AttemptOut.model_validate(a) for a in attempts],
    )


async def list_notifications(
    session: AsyncSession,
    *,
    fleet: bool,
    tenant_id: uuid.UUID | None,
    in_app: bool,
    unread: bool,
    after: uuid.UUID | None,
    limit: int,
) -> Page[AlertNotification]:
    """``fleet``: an admin's view; without ``tenant_id`` it shows the fleet's own
    notifications (notices to admins, fleet channels), with it that tenant's."""
    stmt = select(AlertNotification)
    if fleet:
        stmt = stmt.where(same_tenant(AlertNotification.tenant_id, tenant_id))
    if in_app:
        stmt = stmt.where(AlertNotification.in_app.is_(True))
    if unread:
        stmt = stmt.where(AlertNotification.read_at.is_(None))
    return await paginate(session, stmt, AlertNotification.id, after, limit)


async def get_notification(session: AsyncSession, ident: uuid.UUID) -> AlertNotification:
    return await get_by_id(session, AlertNotification, ident, "notification")


async def notification_detail(session: AsyncSession, row: AlertNotification) -> NotificationDetail:
    deliveries = await session.scalars(
        select(AlertDelivery)
        .where(AlertDelivery.notification_id == row.id)
        .order_by(AlertDelivery.id)
    )
    return NotificationDetail(
        **notification_out(row).model_dump(),
        deliveries=[await delivery_out(session, d) for d in deliveries],
    )


async def read_one(
    session: AsyncSession, row: AlertNotification, now: datetime
) -> AlertNotification:
    """Mark one notification read; one read already keeps its first time."""
    row.read_at = row.read_at or now
    await session.flush()
    return row


async def mark_read(
    session: AsyncSession,
    *,
    ids: list[uuid.UUID] | None,
    fleet: bool,
    tenant_id: uuid.UUID | None,
    now: datetime,
) -> int:
    """Mark ``ids`` (or, with None, the whole feed) read; others' ids change nothing."""
    stmt = update(AlertNotification).where(AlertNotification.read_at.is_(None))
    if ids is not None:
        stmt = stmt.where(AlertNotification.id.in_(ids))
    else:
        stmt = stmt.where(AlertNotification.in_app.is_(True))
    if fleet:
        stmt = stmt.where(same_tenant(AlertNotification.tenant_id, tenant_id))
    result = await session.execute(stmt.values(read_at=now))
    return int(getattr(result, "rowcount", 0) or 0)
