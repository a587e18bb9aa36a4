"""Server resizes: the durable workflow, its steps, and the server's plan price.

Revision ID: 0021
Revises: 0020
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from control_plane.db.base import Money
from control_plane.db.rls import enable_tenant_rls
from control_plane.migrations.columns import (
    drop_tenant_tables,
    moment,
    reference,
    tenant_row,
    timestamps,
)

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("server_resizes", "server_resize_steps")
ACTIVE_WHERE = sa.text("state IN ('running', 'rolling_back')")


def upgrade() -> None:
    with op.batch_alter_table("servers") as batch:
        batch.add_column(sa.Column("plan_monthly_price", Money(), nullable=True))
        batch.add_column(sa.Column("plan_currency", sa.String(3), nullable=True))
    op.create_table(
        "server_resizes",
        *tenant_row(),
        *timestamps(),
        reference("server_id", "servers"),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("from_plan", sa.String(64), nullable=False),
        sa.Column("to_plan", sa.String(64), nullable=False),
        sa.Column("from_price", Money(), nullable=False),
        sa.Column("to_price", Money(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("to_vcpus", sa.Integer(), nullable=False),
        sa.Column("to_memory_mb", sa.Integer(), nullable=False),
        sa.Column("requested_by", sa.String(300), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("step_command_id", sa.Uuid(), nullable=True),
        sa.Column("step_attempts", sa.Integer(), nullable=False, server_default="0"),
        moment("step_deadline_at", nullable=True),
        moment("next_run_at", nullable=True),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        moment("lease_expires_at", nullable=True),
        moment("finished_at", nullable=True),
    )
    op.create_index(
        "uq_server_resizes_active_server",
        "server_resizes",
        ["server_id"],
        unique=True,
        postgresql_where=ACTIVE_WHERE,
        sqlite_where=ACTIVE_WHERE,
    )
    op.create_index("ix_server_resizes_next_run_at", "server_resizes", ["next_run_at"])
    op.create_table(
        "server_resize_steps",
        *tenant_row(),
        reference("resize_id", "server_resizes", index=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(24), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        moment("started_at", nullable=True),
        moment("finished_at", nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
    )
    op.create_index(
        "uq_server_resize_steps_position",
        "server_resize_steps",
        ["resize_id", "position"],
        unique=True,
    )
    for table in TABLES:
        enable_tenant_rls(table)


def downgrade() -> None:
    drop_tenant_tables(TABLES)
    # Not batch mode: on SQLite it rebuilds ``servers``, and dropping the old table with
    # foreign keys on cascades into every table that references servers (backup policies…).
    # Both columns are plain, so SQLite (3.35+) drops them in place.
    for column in ("plan_currency", "plan_monthly_price"):
        if op.get_bind().dialect.name == "sqlite":
            op.execute(f"ALTER TABLE servers DROP COLUMN {column}")
        else:
            op.drop_column("servers", column)
