"""Alert channels, escalation policies, notifications and their deliveries.

``tenant_id`` is NULL for the fleet's own rows (an admin's channels, the fleet default
policy, notices to admins): tenant sessions and row-level security never show those.
Secrets (URLs, webhook secrets, routing keys) are in Vault at ``alerts/<tenant>/<channel>``.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db.base import Base, IdMixin, TimestampMixin, utcnow
from control_plane.db.tenancy import TenantScoped


def _tenant() -> Mapped[uuid.UUID | None]:
    return mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)


PENDING = ("queued", "retrying")  # delivery statuses still to be sent


class AlertChannel(IdMixin, TimestampMixin, TenantScoped, Base):
    """Where notifications go. ``config`` holds the non-secret part as JSON (email
    recipients, a URL's hint); ``quiet_hours`` is JSON or NULL."""

    __tablename__ = "alert_channels"

    tenant_id: Mapped[uuid.UUID | None] = _tenant()
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    config: Mapped[str] = mapped_column(Text, default="{}")
    quiet_hours: Mapped[str | None] = mapped_column(Text)
    has_secret: Mapped[bool] = mapped_column(default=False)


class EscalationPolicy(IdMixin, TimestampMixin, TenantScoped, Base):
    """Ordered steps (JSON: channel ids and a wait each), repeated ``repeat`` more times."""

    __tablename__ = "escalation_policies"

    tenant_id: Mapped[uuid.UUID | None] = _tenant()
    name: Mapped[str] = mapped_column(String(200))
    steps: Mapped[str] = mapped_column(Text, default="[]")
    repeat: Mapped[int] = mapped_column(Integer, default=0)
    repeat_interval_minutes: Mapped[float | None] = mapped_column(Float)
    is_default: Mapped[bool] = mapped_column(default=False)


class AlertNotification(IdMixin, TenantScoped, Base):
    """One message to one set of channels; ``in_app`` puts it in the feed."""

    __tablename__ = "alert_notifications"

    tenant_id: Mapped[uuid.UUID | None] = _tenant()
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    event: Mapped[str] = mapped_column(String(24))
    dedup_key: Mapped[str] = mapped_column(String(200), index=True)
    title: Mapped[str] = mapped_column(String(500))
    severity: Mapped[str] = mapped_column(String(16))
    body: Mapped[str] = mapped_column(Text, default="{}")  # the message as JSON
    step: Mapped[int | None] = mapped_column(Integer)
    in_app: Mapped[bool] = mapped_column(default=False)
    read_at: Mapped[datetime | None]
    failed_at: Mapped[datetime | None]  # every channel finally failed; admins were told


class AlertNotificationIncident(TenantScoped, Base):
    """Which incidents a notification was about (incidents live in a later migration)."""

    __tablename__ = "alert_notification_incidents"

    notification_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("alert_notifications.id", ondelete="CASCADE"), primary_key=True
    )
    incident_id: Mapped[uuid.UUID] = mapped_column(primary_key=True, index=True)
    tenant_id: Mapped[uuid.UUID | None] = _tenant()


class AlertDelivery(IdMixin, TenantScoped, Base):
    """One notification to one channel. The channel's name and kind are copied so the log
    outlives the channel; ``lease_until`` is a sender's claim while it sends."""

    __tablename__ = "alert_deliveries"
    __table_args__ = (Index("ix_alert_deliveries_due", "status", "next_attempt_at"),)

    tenant_id: Mapped[uuid.UUID | None] = _tenant()
    notification_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("alert_notifications.id", ondelete="CASCADE"), index=True
    )
    channel_id: Mapped[uuid.UUID] = mapped_column(index=True)
    channel_name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    lease_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    delivered_at: Mapped[datetime | None]


class AlertDeliveryAttempt(IdMixin, TenantScoped, Base):
    """Each try of a delivery and what the other end said."""

    __tablename__ = "alert_delivery_attempts"

    tenant_id: Mapped[uuid.UUID | None] = _tenant()
    delivery_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("alert_deliveries.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime]
    ok: Mapped[bool]
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
