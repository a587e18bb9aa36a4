"""Health checks: latest result per (server, check), history of changes, schedule.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from control_plane.db.rls import enable_tenant_rls
from control_plane.migrations.columns import drop_tenant_tables, moment, reference, tenant_row

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("health_checks", "health_changes", "health_schedules")


def upgrade() -> None:
    op.create_table(
        "health_checks",
        *tenant_row(),
        reference("server_id", "servers", index=False),  # unique below
        sa.Column("check", sa.String(200), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("observed", sa.String(500), nullable=True),
        sa.Column("threshold", sa.String(500), nullable=True),
        moment("last_run_at"),
        moment("changed_at"),
        sa.Column("unknowns", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("pending_state", sa.String(16), nullable=True),
        sa.Column("pending_severity", sa.String(16), nullable=True),
        sa.Column("pending_detail", sa.Text(), nullable=True),
        moment("pending_since", nullable=True),
        sa.UniqueConstraint("server_id", "check", name="uq_health_checks_server"),
    )
    op.create_table(
        "health_changes",
        *tenant_row(),
        reference("server_id", "servers", index=False),  # with "at" below
        sa.Column("check", sa.String(200), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("previous_state", sa.String(16), nullable=True),
        sa.Column("previous_severity", sa.String(16), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("observed", sa.String(500), nullable=True),
        sa.Column("threshold", sa.String(500), nullable=True),
        moment("at"),
    )
    op.create_index("ix_health_changes_server_at", "health_changes", ["server_id", "at"])
    op.create_table(
        "health_schedules",
        sa.Column(
            "server_id",
            sa.Uuid(),
            sa.ForeignKey("servers.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        reference("tenant_id", "tenants"),
        moment("next_run_at", index=True),
        moment("next_dns_at", nullable=True),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        moment("lease_expires_at", nullable=True),
        moment("last_started_at", nullable=True),
        moment("last_finished_at", nullable=True),
        moment("agent_disconnected_at", nullable=True),
    )
    for table in TABLES:
        enable_tenant_rls(table)


def downgrade() -> None:
    drop_tenant_tables(TABLES)
