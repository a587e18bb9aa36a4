"""Alert delivery figures for /metrics, read from the database (true across replicas)."""

from __future__ import annotations

from datetime import datetime

from prometheus_client import CollectorRegistry, Gauge
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.alerts.models import PENDING, AlertDelivery, AlertNotification

STATUSES = ("queued", "sent", "retrying", "failed", "quiet")


async def add_alert_gauges(
    session: AsyncSession, registry: CollectorRegistry, now: datetime
) -> None:
    deliveries = Gauge(
        "mailfleet_alert_deliveries", "Alert deliveries by status.", ["status"], registry=registry
    )
    for name in STATUSES:
        deliveries.labels(name).set(0)
    counts = await session.execute(
        select(AlertDelivery.status, func.count()).group_by(AlertDelivery.status)
    )
    for name, count in counts.all():
        deliveries.labels(name).set(count)
    failed = Gauge(
        "mailfleet_alert_failed_steps",
        "Notifications (escalation steps) whose every channel finally failed.",
        registry=registry,
    )
    failed.set(
        await session.scalar(
            select(func.count(AlertNotification.id)).where(AlertNotification.failed_at.is_not(None))
        )
        or 0
    )
    oldest = await session.scalar(
        select(func.min(AlertDelivery.next_attempt_at)).where(AlertDelivery.status.in_(PENDING))
    )
    lag = Gauge(
        "mailfleet_alert_delivery_lag_seconds",
        "How long the most overdue pending delivery has been due (0: none).",
        registry=registry,
    )
    lag.set(max((now - oldest).total_seconds(), 0.0) if oldest is not None else 0.0)
