"""Incidents, their timeline, and what holds their notifications back (silences, maintenance
windows).

``server_id`` and ``workspace_id`` on an incident are plain columns, not foreign keys: an
incident outlives the server it was about (it is resolved, with that reason, when the server
goes), and its history stays readable.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db.base import Base, IdMixin, TenantOwned, TimestampMixin

OPEN_STATES = ("open", "acknowledged")
# Never two unresolved incidents for one (tenant, subject, check): enforced by the database.
OPEN_KEY_WHERE = text("state <> 'resolved'")


class Incident(IdMixin, TimestampMixin, TenantOwned, Base):
    """One subject's check going wrong, from the first failing signal to its resolution.

    The escalation columns are the engine's bookkeeping: ``escalation_step`` is the policy
    step last notified (NULL: not notified yet, waiting for its group window, which starts at
    ``next_escalation_at``), ``escalation_round`` how many times the whole policy has run
    again, ``next_escalation_at`` when the engine looks at it next (NULL: nothing more to do).
    ``group_key`` is the incident whose notification it went out with (its own id when it
    led); every later message for the group uses it as the ``dedup_key``.
    """

    __tablename__ = "incidents"
    __table_args__ = (
        Index(
            "uq_incidents_open_key",
            "tenant_id",
            "subject_kind",
            "subject_id",
            "check",
            unique=True,
            postgresql_where=OPEN_KEY_WHERE,
            sqlite_where=OPEN_KEY_WHERE,
        ),
        Index("ix_incidents_state_server", "state", "server_id"),
    )

    subject_kind: Mapped[str] = mapped_column(String(16))
    subject_id: Mapped[str] = mapped_column(String(255))
    check: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16), default="open")
    severity: Mapped[str] = mapped_column(String(16))
    summary: Mapped[str] = mapped_column(Text, default="")
    server_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    workspace_id: Mapped[uuid.UUID | None]
    opened_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(String(300))
    resolved_at: Mapped[datetime | None]
    resolved_by: Mapped[str | None] = mapped_column(String(300))  # "auto" or who
    resolution: Mapped[str | None] = mapped_column(Text)  # why, when not by a person

    group_key: Mapped[uuid.UUID | None] = mapped_column(index=True)
    policy_id: Mapped[uuid.UUID | None]
    escalation_step: Mapped[int | None] = mapped_column(Integer)
    escalation_round: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_escalation_at: Mapped[datetime | None] = mapped_column(index=True)
    last_notified_at: Mapped[datetime | None]
    notified_channels: Mapped[str] = mapped_column(Text, default="", server_default="")
    suppressed_by: Mapped[str | None] = mapped_column(String(300))  # the current hold, if any


class IncidentEvent(IdMixin, TenantOwned, Base):
    """One line of an incident's timeline. Deliveries per channel are not copied here: the
    timeline reads them from the alerts' delivery log."""

    __tablename__ = "incident_events"
    __table_args__ = (Index("ix_incident_events_incident_id_id", "incident_id", "id"),)

    incident_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("incidents.id", ondelete="CASCADE"), index=False
    )
    at: Mapped[datetime]
    # triggered, updated, grouped, notified, suppressed, escalated, repeat, acknowledged,
    # commented, resolved, no_policy
    kind: Mapped[str] = mapped_column(String(24))
    actor: Mapped[str | None] = mapped_column(String(300))
    detail: Mapped[str] = mapped_column(Text, default="")
    step: Mapped[int | None] = mapped_column(Integer)
    notification_id: Mapped[uuid.UUID | None]


class Silence(IdMixin, TimestampMixin, TenantOwned, Base):
    """Holds back notifications of matching incidents between ``starts_at`` and ``ends_at``
    (the incidents are still recorded). A NULL matcher matches anything; ``check`` is exact
    or ends in ``*`` for a prefix."""

    __tablename__ = "silences"

    server_id: Mapped[uuid.UUID | None]
    check: Mapped[str | None] = mapped_column(String(200))
    severity: Mapped[str | None] = mapped_column(String(16))
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime] = mapped_column(index=True)
    created_by: Mapped[str] = mapped_column(String(300))
    comment: Mapped[str] = mapped_column(Text, default="")


class MaintenanceWindow(IdMixin, TimestampMixin, TenantOwned, Base):
    """A planned outage of one server: its incidents are recorded, not notified."""

    __tablename__ = "maintenance_windows"

    server_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("servers.id", ondelete="CASCADE"), index=True
    )
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime] = mapped_column(index=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(300))
