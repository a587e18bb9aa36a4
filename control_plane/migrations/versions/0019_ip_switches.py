"""IP switches: the durable workflow and its steps.

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from control_plane.db.rls import enable_tenant_rls
from control_plane.migrations.columns import (
    drop_tenant_tables,
    moment,
    reference,
    tenant_row,
    timestamps,
)

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("ip_switches", "ip_switch_steps")
ACTIVE_WHERE = sa.text("state IN ('running', 'rolling_back')")


def upgrade() -> None:
    op.create_table(
        "ip_switches",
        *tenant_row(),
        *timestamps(),
        reference("server_id", "servers"),
        sa.Column("from_ip", sa.String(45), nullable=False),
        sa.Column("to_ip", sa.String(45), nullable=False),
        sa.Column("auto", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("requested_by", sa.String(300), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("rollback_position", sa.Integer(), nullable=True),
        sa.Column("previous_snat", sa.String(45), nullable=True),
        sa.Column("snat_ports", sa.String(200), nullable=True),
        sa.Column("previous_ptr", sa.String(253), nullable=True),
        sa.Column("to_was_published", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("step_command_id", sa.Uuid(), nullable=True),
        sa.Column("step_attempts", sa.Integer(), nullable=False, server_default="0"),
        moment("step_deadline_at", nullable=True),
        moment("next_run_at", nullable=True),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        moment("lease_expires_at", nullable=True),
        moment("finished_at", nullable=True),
    )
    op.create_index(
        "uq_ip_switches_active_server",
        "ip_switches",
        ["server_id"],
        unique=True,
        postgresql_where=ACTIVE_WHERE,
        sqlite_where=ACTIVE_WHERE,
    )
    op.create_index("ix_ip_switches_next_run_at", "ip_switches", ["next_run_at"])
    op.create_table(
        "ip_switch_steps",
        *tenant_row(),
        reference("switch_id", "ip_switches", index=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(24), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        moment("started_at", nullable=True),
        moment("finished_at", nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
    )
    op.create_index(
        "uq_ip_switch_steps_position", "ip_switch_steps", ["switch_id", "position"], unique=True
    )
    for table in TABLES:
        enable_tenant_rls(table)


def downgrade() -> None:
    drop_tenant_tables(TABLES)
