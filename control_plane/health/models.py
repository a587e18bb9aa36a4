"""Health rows: each server's latest result per check, the history of its changes, and the
sweep's schedule (when each server is next due, and which replica is checking it now)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db.base import Base, IdMixin, TenantOwned


class HealthCheck(IdMixin, TenantOwned, Base):
    """The confirmed state of one check of one server (what the API shows and incidents
    follow). ``pending_*`` is a failing result that waits for its flap-guard re-check before
    it counts; ``unknowns`` counts unknown results in a row (three make it critical)."""

    __tablename__ = "health_checks"
    __table_args__ = (UniqueConstraint("server_id", "check", name="uq_health_checks_server"),)

    server_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("servers.id", ondelete="CASCADE"))
    check: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16))  # ok, failing, unknown
    severity: Mapped[str] = mapped_column(String(16))  # critical, warning, info
    detail: Mapped[str] = mapped_column(Text, default="")
    observed: Mapped[str | None] = mapped_column(String(500))
    threshold: Mapped[str | None] = mapped_column(String(500))
    last_run_at: Mapped[datetime]
    changed_at: Mapped[datetime]
    unknowns: Mapped[int] = mapped_column(default=0, server_default="0")
    pending_state: Mapped[str | None] = mapped_column(String(16))
    pending_severity: Mapped[str | None] = mapped_column(String(16))
    pending_detail: Mapped[str | None] = mapped_column(Text)
    pending_since: Mapped[datetime | None]


class HealthChange(IdMixin, TenantOwned, Base):
    """A check's confirmed state or severity changed (its first result counts as one)."""

    __tablename__ = "health_changes"
    __table_args__ = (Index("ix_health_changes_server_at", "server_id", "at"),)

    server_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("servers.id", ondelete="CASCADE"))
    check: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16))
    severity: Mapped[str] = mapped_column(String(16))
    previous_state: Mapped[str | None] = mapped_column(String(16))
    previous_severity: Mapped[str | None] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(Text, default="")
    observed: Mapped[str | None] = mapped_column(String(500))
    threshold: Mapped[str | None] = mapped_column(String(500))
    at: Mapped[datetime]


class HealthSchedule(TenantOwned, Base):
    """When a server's checks are next due (its slot in the interval, from a stable offset),
    when its DNS drift check is, and the lease of the replica running them now."""

    __tablename__ = "health_schedules"

    server_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("servers.id", ondelete="CASCADE"), primary_key=True
    )
    next_run_at: Mapped[datetime] = mapped_column(index=True)
    next_dns_at: Mapped[datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None]
    last_started_at: Mapped[datetime | None]
    last_finished_at: Mapped[datetime | None]
    agent_disconnected_at: Mapped[datetime | None]  # its stream ended (cleared on reconnect)
