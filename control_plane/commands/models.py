from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Float, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db.base import Base, IdMixin, TenantOwned, utcnow

FINAL_STATES = frozenset({"succeeded", "failed", "timed_out", "cancelled"})
LIVE_STATES = frozenset({"sent", "running"})


class Command(IdMixin, TenantOwned, Base):
    """queued → sent → running → succeeded | failed | timed_out | cancelled."""

    __tablename__ = "commands"
    __table_args__ = (
        UniqueConstraint("server_id", "idempotency_key", name="uq_commands_server_key"),
        Index("ix_commands_state_server", "state", "server_id"),
    )

    server_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("servers.id", ondelete="CASCADE"))
    idempotency_key: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(64))
    payload: Mapped[str] = mapped_column(Text, default="{}")
    state: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(default=0)
    progress_percent: Mapped[int] = mapped_column(default=0)
    progress_message: Mapped[str] = mapped_column(String(500), default="")
    result: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    timeout_seconds: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    deadline_at: Mapped[datetime | None]
    cancel_requested_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
