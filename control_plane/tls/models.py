"""The certificate each server's mail host has (the key pair itself is in Vault)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db.base import Base, IdMixin, TenantOwned, TimestampMixin


class Certificate(IdMixin, TimestampMixin, TenantOwned, Base):
    __tablename__ = "certificates"
    __table_args__ = (UniqueConstraint("server_id", name="uq_certificates_server"),)

    server_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("servers.id", ondelete="CASCADE"))
    names: Mapped[str] = mapped_column(Text, default="")  # one per line
    serial: Mapped[str | None] = mapped_column(String(64))
    issued_at: Mapped[datetime | None]
    not_after: Mapped[datetime | None] = mapped_column(index=True)
    renewing_until: Mapped[datetime | None]  # a claim, so one replica renews at a time
    last_error: Mapped[str | None] = mapped_column(Text)
    failures: Mapped[int] = mapped_column(default=0, server_default="0")  # in a row
    next_attempt_at: Mapped[datetime | None]  # backoff after a failure
    last_failure_at: Mapped[datetime | None]
    failing_since: Mapped[datetime | None]  # the first failure of the current run
    command_id: Mapped[uuid.UUID | None]  # the delivery to the agent
