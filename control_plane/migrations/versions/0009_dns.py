"""DNS providers, each mail domain's DNS settings and the mail hosts' certificates, with
row-level security.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from control_plane.db.base import UTCDateTime
from control_plane.db.rls import disable_tenant_rls, enable_tenant_rls
from control_plane.migrations.columns import reference, tenant_row, timestamps

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dns_providers",
        *tenant_row(),
        *timestamps(),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("settings", sa.Text(), nullable=False),
        sa.UniqueConstraint("tenant_id", "name", name="uq_dns_providers_name"),
    )
    op.create_table(
        "domain_dns",
        *tenant_row(),
        *timestamps(),
        reference("domain_id", "mail_domains", index=False),  # unique below
        reference("provider_id", "dns_providers", ondelete="RESTRICT"),
        sa.Column("zone", sa.String(253), nullable=False),
        sa.Column("dmarc_policy", sa.String(16), nullable=False),
        sa.Column("dmarc_policy_since", UTCDateTime(), nullable=True),
        sa.Column("dmarc_step_days", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("dmarc_rua", sa.Text(), nullable=False),
        sa.Column("tls_rpt_rua", sa.Text(), nullable=False),
        sa.Column("spf_includes", sa.Text(), nullable=False),
        sa.Column("caa_issuers", sa.Text(), nullable=False),
        sa.Column("mta_sts_mode", sa.String(16), nullable=False, server_default="none"),
        sa.Column("published", sa.Text(), nullable=False),
        sa.UniqueConstraint("domain_id", name="uq_domain_dns_domain"),
    )
    op.create_table(
        "certificates",
        *tenant_row(),
        *timestamps(),
        reference("server_id", "servers", index=False),  # unique below
        sa.Column("names", sa.Text(), nullable=False),
        sa.Column("serial", sa.String(64), nullable=True),
        sa.Column("issued_at", UTCDateTime(), nullable=True),
        sa.Column("not_after", UTCDateTime(), nullable=True, index=True),
        sa.Column("renewing_until", UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("command_id", sa.Uuid(), nullable=True),
        sa.UniqueConstraint("server_id", name="uq_certificates_server"),
    )
    op.create_table(
        "dns_checks",
        *tenant_row(),
        reference("domain_id", "mail_domains"),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=False),
        sa.Column("propagated", sa.Boolean(), nullable=False),
        sa.Column("report", sa.Text(), nullable=False),
    )
    for table in ("dns_providers", "domain_dns", "certificates", "dns_checks"):
        enable_tenant_rls(table)


def downgrade() -> None:
    for table in ("dns_checks", "certificates", "domain_dns", "dns_providers"):
        disable_tenant_rls(table)
        op.drop_table(table)
