from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db.base import Base, IdMixin, Money, TenantOwned, TimestampMixin


class Server(IdMixin, TimestampMixin, TenantOwned, Base):
    """A VPS and its provisioning workflow.

    ``agent_state`` is the enrollment lifecycle (online/unknown derive from heartbeats).
    ``state`` is the provisioning workflow (see ``provisioning/workflow.py``); the columns
    after it are the workflow's bookkeeping: when its current step may run again, until when
    that step may take, and which control-plane replica holds it (a lease, so a step's slow
    provider call never runs inside an open transaction).
    """

    __tablename__ = "servers"
    __table_args__ = (
        UniqueConstraint("tenant_id", "name", name="uq_servers_tenant_name"),
        Index("ix_servers_workflow_due", "state", "next_step_at"),
    )

    workspace_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("workspaces.id", ondelete="SET NULL"), index=True
    )
    escalation_policy_id: Mapped[uuid.UUID | None] = mapped_column(  # NULL: the workspace's
        ForeignKey("escalation_policies.id", ondelete="SET NULL"), index=True
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

    region: Mapped[str | None] = mapped_column(String(64))
    plan: Mapped[str | None] = mapped_column(String(64))
    # The plan's monthly price when ordered or last resized (migration 0021).
    plan_monthly_price: Mapped[Decimal | None] = mapped_column(Money())
    plan_currency: Mapped[str | None] = mapped_column(String(3))
    instance_id: Mapped[str | None] = mapped_column(String(128))
    ipv4: Mapped[str | None] = mapped_column(String(45))
    ssh_public_key: Mapped[str | None] = mapped_column(Text)
    ssh_key_downloaded_at: Mapped[datetime | None]
    # The VPS's SSH host key as first met (provisioning/ssh_install.py); later ones must match.
    ssh_host_key: Mapped[str | None] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(24), default="requested")
    state_changed_at: Mapped[datetime | None]
    failed_step: Mapped[str | None] = mapped_column(String(24))
    failure_reason: Mapped[str | None] = mapped_column(Text)
    next_step_at: Mapped[datetime | None]
    step_deadline_at: Mapped[datetime | None]
    step_attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None]
    step_command_id: Mapped[uuid.UUID | None]
    mail_stack: Mapped[str] = mapped_column(String(16), default="mailu")
    mail_hostname: Mapped[str | None] = mapped_column(String(253))
    # DKIM rotation (mail/dkim.py): the selector MailU signs with, the next one (published
    # until the switch) and the retiring one (published until it is retired).
    dkim_selector: Mapped[str | None] = mapped_column(String(63))
    dkim_next_selector: Mapped[str | None] = mapped_column(String(63))
    dkim_switch_at: Mapped[datetime | None]
    dkim_retiring_selector: Mapped[str | None] = mapped_column(String(63))
    dkim_retire_at: Mapped[datetime | None]


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
