"""Backup policies, snapshots and disaster recoveries, with row-level security.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from control_plane.db.base import UTCDateTime
from control_plane.db.rls import disable_tenant_rls, enable_tenant_rls
from control_plane.migrations.columns import reference, tenant_row, timestamps

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


_COUNTS = (
    "interval_seconds", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly",
    "keep_yearly", "forget_interval_seconds", "check_interval_seconds", "check_subsets",
    "check_next_subset", "drill_interval_seconds", "drill_sample",
)  # fmt: skip
_TIMES = (
    "next_backup_at", "next_forget_at", "next_check_at", "last_success_at", "last_failure_at",
    "last_check_at", "results_seen_at", "next_drill_at", "last_drill_at",
)  # fmt: skip


def upgrade() -> None:
    integer = sa.Integer()
    op.create_table(
        "backup_policies",
        *tenant_row(),
        reference("server_id", "servers", index=False),  # the unique constraint indexes it
        sa.Column("repository_url", sa.String(1000), nullable=False),
        sa.Column("offsite_url", sa.String(1000), nullable=True),
        sa.Column("env_names", sa.Text(), nullable=False),
        sa.Column("paths", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        *[sa.Column(name, integer, nullable=False) for name in _COUNTS],
        sa.Column("limit_upload_kib", integer, nullable=True),
        *[sa.Column(name, UTCDateTime(), nullable=True) for name in _TIMES],
        sa.Column("inherited", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_check_error", sa.Text(), nullable=True),
        sa.Column("last_drill_error", sa.Text(), nullable=True),
        *timestamps(),
        sa.UniqueConstraint("server_id", name="uq_backup_policies_server"),
    )
    op.create_table(
        "backup_snapshots",
        *tenant_row(),
        reference("server_id", "servers"),
        sa.Column("short_id", sa.String(16), nullable=False),
        sa.Column("taken_at", UTCDateTime(), nullable=False, index=True),
        sa.Column("root", sa.String(1000), nullable=False),
        sa.Column("paths", sa.Text(), nullable=False),
        sa.Column("data_added", sa.BigInteger(), nullable=False),
        sa.Column("bytes_processed", sa.BigInteger(), nullable=False),
        sa.Column("files", integer, nullable=False),
        sa.Column("duration_seconds", sa.Float(), nullable=False),
        sa.Column("offsite_copied", sa.Boolean(), nullable=False),
        sa.UniqueConstraint("server_id", "short_id", name="uq_backup_snapshots_id"),
    )
    op.create_table(
        "server_recoveries",
        *tenant_row(),
        reference("old_server_id", "servers", nullable=True, ondelete="SET NULL"),
        reference("new_server_id", "servers", nullable=True, ondelete="SET NULL"),
        sa.Column("snapshot_short_id", sa.String(16), nullable=False),
        sa.Column("state", sa.String(24), nullable=False),
        sa.Column("step_command_id", sa.Uuid(), nullable=True),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("rto_seconds", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
    )
    op.create_table(
        "workspace_backup_policies",
        *tenant_row(),
        reference("workspace_id", "workspaces", index=False),
        sa.Column("template", sa.Text(), nullable=False),
        *timestamps(),
        sa.UniqueConstraint("workspace_id", name="uq_workspace_backup_policies"),
    )
    for table in (
        "backup_policies",
        "backup_snapshots",
        "server_recoveries",
        "workspace_backup_policies",
    ):
        enable_tenant_rls(table)


def downgrade() -> None:
    for table in (
        "workspace_backup_policies",
        "server_recoveries",
        "backup_snapshots",
        "backup_policies",
    ):
        disable_tenant_rls(table)
        op.drop_table(table)
