"""The provisioning workflow's history: one row per step change, failure, retry or note."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db.base import Base, IdMixin, TenantOwned, utcnow


class ServerEvent(IdMixin, TenantOwned, Base):
    """What happened to a server, in order (ids are UUIDv7, so id order is time order)."""

    __tablename__ = "server_events"
    __table_args__ = (Index("ix_server_events_server_id_id", "server_id", "id"),)

    server_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("servers.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    state: Mapped[str] = mapped_column(String(24))
    kind: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
