"""Mail counts per day, sending IP and sender domain.

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from control_plane.db.rls import enable_tenant_rls
from control_plane.migrations.columns import drop_tenant_tables, moment, reference, tenant_row

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("mail_counts", "mail_stats_reports")


def upgrade() -> None:
    op.create_table(
        "mail_counts",
        *tenant_row(),
        reference("server_id", "servers", index=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("source_ip", sa.String(45), nullable=False),
        sa.Column("sender_domain", sa.String(253), nullable=False),
        sa.Column("sent", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("deferred", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("bounced", sa.Integer(), nullable=False, server_default="0"),
        sa.UniqueConstraint(
            "server_id", "day", "source_ip", "sender_domain", name="uq_mail_counts_key"
        ),
    )
    op.create_index("ix_mail_counts_domain_day", "mail_counts", ["sender_domain", "day"])
    op.create_table(
        "mail_stats_reports",
        reference("tenant_id", "tenants"),
        sa.Column(
            "server_id",
            sa.Uuid(),
            sa.ForeignKey("servers.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        moment("reported_at", nullable=True),
        sa.Column("log_found", sa.Boolean(), nullable=True),
        sa.Column("lines_read", sa.Integer(), nullable=True),
        moment("failed_at", nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
    )
    for table in TABLES:
        enable_tenant_rls(table)


def downgrade() -> None:
    drop_tenant_tables(TABLES)
