"""The IP inventory: addresses per server with role, warmup, pause, listing, and history.

Revision ID: 0016
Revises: 0015
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

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("ip_addresses", "ip_events")
LIVE_WHERE = sa.text("released_at IS NULL")


def upgrade() -> None:
    op.create_table(
        "ip_addresses",
        *tenant_row(),
        *timestamps(),
        reference("server_id", "servers"),
        sa.Column("address", sa.String(45), nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("is_main", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("ptr", sa.String(253), nullable=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("dns_published", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("warmup_plan", sa.String(16), nullable=True),
        sa.Column("warmup_start", sa.Date(), nullable=True),
        sa.Column("warmup_caps", sa.Text(), nullable=True),
        sa.Column("warmup_today_cap", sa.Integer(), nullable=True),
        sa.Column("warmup_today_cap_day", sa.Date(), nullable=True),
        moment("warmup_done_at", nullable=True),
        moment("paused_at", nullable=True),
        sa.Column("paused_reason", sa.Text(), nullable=True),
        sa.Column("paused_by", sa.String(300), nullable=True),
        sa.Column("listing", sa.String(16), nullable=True),
        sa.Column("score", sa.Integer(), nullable=True),
        moment("listing_checked_at", nullable=True),
        moment("assigned_at"),
        moment("released_at", nullable=True),
    )
    op.create_index(
        "uq_ip_addresses_live",
        "ip_addresses",
        ["address"],
        unique=True,
        postgresql_where=LIVE_WHERE,
        sqlite_where=LIVE_WHERE,
    )
    op.create_table(
        "ip_events",
        *tenant_row(),
        reference("ip_id", "ip_addresses", index=False),
        moment("at"),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(300), nullable=True),
    )
    op.create_index("ix_ip_events_ip_at", "ip_events", ["ip_id", "at"])
    for table in TABLES:
        enable_tenant_rls(table)


def downgrade() -> None:
    drop_tenant_tables(TABLES)
