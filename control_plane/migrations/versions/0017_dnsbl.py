"""DNSBL results, schedules, history and delisting requests.

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from control_plane.db.rls import enable_tenant_rls
from control_plane.migrations.columns import drop_tenant_tables, moment, reference, tenant_row

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("dnsbl_subjects", "dnsbl_results", "dnsbl_checks", "dnsbl_delist_requests")
OPEN_WHERE = sa.text("state IN ('opened', 'submitted')")


def upgrade() -> None:
    op.create_table(
        "dnsbl_subjects",
        *tenant_row(),
        reference("server_id", "servers"),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("name", sa.String(253), nullable=False),
        reference("ip_id", "ip_addresses", index=False, nullable=True),  # unique below
        reference("domain_id", "mail_domains", index=False, nullable=True),
        sa.Column("listing", sa.String(16), nullable=True),
        sa.Column("score", sa.Integer(), nullable=True),
        moment("checked_at", nullable=True),
        moment("next_run_at", index=True),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        moment("lease_expires_at", nullable=True),
        sa.UniqueConstraint("ip_id", name="uq_dnsbl_subjects_ip"),
        sa.UniqueConstraint("domain_id", name="uq_dnsbl_subjects_domain"),
    )
    op.create_table(
        "dnsbl_results",
        *tenant_row(),
        reference("subject_id", "dnsbl_subjects", index=False),  # unique below
        sa.Column("zone", sa.String(200), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("code", sa.String(200), nullable=True),
        sa.Column("meaning", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        moment("checked_at"),
        moment("changed_at"),
        sa.UniqueConstraint("subject_id", "zone", name="uq_dnsbl_results_zone"),
    )
    op.create_table(
        "dnsbl_checks",
        *tenant_row(),
        reference("subject_id", "dnsbl_subjects", index=False),  # with checked_at below
        moment("checked_at", index=True),
        sa.Column("listing", sa.String(16), nullable=False),
        sa.Column("score", sa.Integer(), nullable=True),
        sa.Column("listed", sa.Text(), nullable=False),
        sa.Column("unknown", sa.Text(), nullable=False),
    )
    op.create_index("ix_dnsbl_checks_subject_at", "dnsbl_checks", ["subject_id", "checked_at"])
    op.create_table(
        "dnsbl_delist_requests",
        *tenant_row(),
        reference("ip_id", "ip_addresses"),
        sa.Column("address", sa.String(45), nullable=False),
        sa.Column("zone", sa.String(200), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("opened_by", sa.String(300), nullable=True),
        moment("opened_at"),
        moment("submitted_at", nullable=True),
        moment("next_check_at", nullable=True, index=True),
        moment("last_checked_at", nullable=True),
        moment("closed_at", nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
    )
    op.create_index(
        "uq_dnsbl_delist_requests_open",
        "dnsbl_delist_requests",
        ["ip_id", "zone"],
        unique=True,
        postgresql_where=OPEN_WHERE,
        sqlite_where=OPEN_WHERE,
    )
    for table in TABLES:
        enable_tenant_rls(table)


def downgrade() -> None:
    drop_tenant_tables(TABLES)
