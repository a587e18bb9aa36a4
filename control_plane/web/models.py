"""Console sessions and failed sign-ins, kept in the database so any replica serves any
request. Neither is tenant-scoped: both are read before the caller's tenant is known, by
system sessions only (the tenant role has no grant on them)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db.base import Base, IdMixin, utcnow


class WebSession(IdMixin, Base):
    """A signed-in browser: only the SHA-256 of its cookie token is kept."""

    __tablename__ = "web_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    api_key_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("api_keys.id", ondelete="CASCADE"), index=True
    )
    # The tenant the console shows: the key's own, or the one an admin switched to (None: all).
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("tenants.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)


class LoginFailure(IdMixin, Base):
    """One refused sign-in, counted per client address within a window."""

    __tablename__ = "web_login_failures"
    __table_args__ = (Index("ix_web_login_failures_address_at", "address", "at"),)

    address: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(default=utcnow)
