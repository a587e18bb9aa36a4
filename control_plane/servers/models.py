from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db.base import Base, IdMixin, TenantOwned, TimestampMixin


class Server(IdMixin, TimestampMixin, TenantOwned, Base):
    """A VPS. ``agent_state`` is the enrollment lifecycle; online/unknown derive from heartbeats."""

    __tablename__ = "servers"
    __table_args__ = (UniqueConstraint("tenant_id", "name", name="uq_servers_tenant_name"),)

    workspace_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("workspaces.id", ondelete="SET NULL"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    provider: Mapped[str] = mapped_column(String(32))
    agent_state: Mapped[str] = mapped_column(String(16), default="pending")
    agent_version: Mapped[str | None] = mapped_column(String(64))
    hostname: Mapped[str | None] = mapped_column(String(255))
    capabilities: Mapped[str] = mapped_column(String(2000), default="")
    enrolled_at: Mapped[datetime | None]
    last_heartbeat_at: Mapped[datetime | None]
    certificate_serial: Mapped[str | None] = mapped_column(String(128))
    certificate_not_after: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None] = mapped_column(index=True)


class AgentCertificate(TenantOwned, Base):
    """Every certificate issued to an agent; the gateway admits only live, unrevoked ones."""

    __tablename__ = "agent_certificates"

    serial: Mapped[str] = mapped_column(String(128), primary_key=True)
    server_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("servers.id", ondelete="CASCADE"), index=True
    )
    issued_at: Mapped[datetime]
    not_after: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
