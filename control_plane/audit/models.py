"""One row per change (or attempted change): who, what, which object, when, from where."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Index, SmallInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db.base import Base, IdMixin, utcnow
from control_plane.db.tenancy import TenantScoped


class AuditEvent(IdMixin, TenantScoped, Base):
    """Append-only: the database refuses UPDATE and DELETE (migration 0011's triggers).

    ``tenant_id`` is no foreign key, so the record of a tenant's deletion (and everything
    before it) outlives the tenant; NULL marks admin-only events, which no tenant sees.
    The key's name and hint are copied, as they were when it acted.
    """

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_object", "object_type", "object_id"),)

    tenant_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor_kind: Mapped[str] = mapped_column(String(16))  # api_key | cli
    key_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    key_name: Mapped[str | None] = mapped_column(String(200))
    key_hint: Mapped[str | None] = mapped_column(String(32))
    user: Mapped[str | None] = mapped_column(String(200))  # the OS user, for the CLI
    address: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(100))
    object_type: Mapped[str | None] = mapped_column(String(50))
    object_id: Mapped[uuid.UUID | None]
    request: Mapped[str] = mapped_column(String(300))
    status: Mapped[int | None] = mapped_column(SmallInteger)
    succeeded: Mapped[bool]
