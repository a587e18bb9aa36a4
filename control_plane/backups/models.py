"""A server's backup policy (with its schedule's bookkeeping) and the snapshots it made."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db.base import Base, IdMixin, TenantOwned, TimestampMixin


class BackupPolicy(IdMixin, TimestampMixin, TenantOwned, Base):
    """What to back up where, how often and for how long. Repository passwords and backend
    credentials are in Vault (``vps/<tenant>/<server>/backup``), never here."""

    __tablename__ = "backup_policies"
    __table_args__ = (UniqueConstraint("server_id", name="uq_backup_policies_server"),)

    server_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("servers.id", ondelete="CASCADE"))
    repository_url: Mapped[str] = mapped_column(String(1000))
    offsite_url: Mapped[str | None] = mapped_column(String(1000))
    env_names: Mapped[str] = mapped_column(Text, default="")  # credential names, one per line
    paths: Mapped[str] = mapped_column(Text, default="")  # one per line; empty: MailU's data
    enabled: Mapped[bool] = mapped_column(default=True)
    interval_seconds: Mapped[int] = mapped_column(Integer, default=3600)
    keep_hourly: Mapped[int] = mapped_column(Integer, default=24)
    keep_daily: Mapped[int] = mapped_column(Integer, default=30)
    keep_weekly: Mapped[int] = mapped_column(Integer, default=12)
    keep_monthly: Mapped[int] = mapped_column(Integer, default=12)
    keep_yearly: Mapped[int] = mapped_column(Integer, default=0)
    forget_interval_seconds: Mapped[int] = mapped_column(Integer, default=86400)
    check_interval_seconds: Mapped[int] = mapped_column(Integer, default=7 * 86400)
    check_subsets: Mapped[int] = mapped_column(Integer, default=12)
    check_next_subset: Mapped[int] = mapped_column(Integer, default=1)
    drill_interval_seconds: Mapped[int] = mapped_column(Integer, default=7 * 86400)
    drill_sample: Mapped[int] = mapped_column(Integer, default=100)
    limit_upload_kib: Mapped[int | None] = mapped_column(Integer)

    next_backup_at: Mapped[datetime | None]
    next_forget_at: Mapped[datetime | None]
    next_check_at: Mapped[datetime | None]
    next_drill_at: Mapped[datetime | None]
    last_success_at: Mapped[datetime | None]
    last_failure_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    last_check_at: Mapped[datetime | None]
    last_check_error: Mapped[str | None] = mapped_column(Text)
    last_check_state: Mapped[str | None] = mapped_column(String(16))  # CheckState; NULL: never
    last_drill_at: Mapped[datetime | None]
    last_drill_error: Mapped[str | None] = mapped_column(Text)
    last_drill_state: Mapped[str | None] = mapped_column(String(16))
    results_seen_at: Mapped[datetime | None]  # the agent reports absorbed up to here
    inherited: Mapped[bool] = mapped_column(default=False)  # made from the workspace's policy


class BackupSnapshot(IdMixin, TenantOwned, Base):
    """A restic snapshot in the server's primary repository, as its ``backup.run`` reported."""

    __tablename__ = "backup_snapshots"
    __table_args__ = (UniqueConstraint("server_id", "short_id", name="uq_backup_snapshots_id"),)

    server_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("servers.id", ondelete="CASCADE"), index=True
    )
    short_id: Mapped[str] = mapped_column(String(16))
    taken_at: Mapped[datetime] = mapped_column(index=True)
    root: Mapped[str] = mapped_column(String(1000), default="/")  # the agent's root then
    paths: Mapped[str] = mapped_column(Text, default="")
    data_added: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_processed: Mapped[int] = mapped_column(BigInteger, default=0)
    files: Mapped[int] = mapped_column(Integer, default=0)
    duration_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    offsite_copied: Mapped[bool] = mapped_column(default=False)


class ServerRecovery(IdMixin, TenantOwned, Base):
    """Disaster recovery of a server onto a new VPS, step by step, with its RTO."""

    __tablename__ = "server_recoveries"

    old_server_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("servers.id", ondelete="SET NULL"), index=True
    )
    new_server_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("servers.id", ondelete="SET NULL"), index=True
    )
    snapshot_short_id: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(24), default="provisioning")
    step_command_id: Mapped[uuid.UUID | None]
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    rto_seconds: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)


class WorkspaceBackupPolicy(IdMixin, TimestampMixin, TenantOwned, Base):
    """The policy every server of a workspace gets unless it has its own: the request body
    (``repository_url`` with ``{server_id}``) as JSON; its secrets in Vault."""

    __tablename__ = "workspace_backup_policies"
    __table_args__ = (UniqueConstraint("workspace_id", name="uq_workspace_backup_policies"),)

    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    template: Mapped[str] = mapped_column(Text)
