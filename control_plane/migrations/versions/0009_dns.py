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

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _common() -> list[sa.Column[object]]:
    return [
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column(
            "tenant_id",
            sa.Uuid(),
            sa.ForeignKey("tenants.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("created_at", UTCDateTime(), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), server_default=sa.func.now(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "dns_providers",
        *_common(),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("settings", sa.Text(), nullable=False),
        sa.UniqueConstraint("tenant_id", "name", name="uq_dns_providers_name"),
    )
    op.create_table(
        "domain_dns",
        *_common(),
        sa.Column(
            "domain_id",
            sa.Uuid(),
            sa.ForeignKey("mail_domains.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "provider_id",
            sa.Uuid(),
            sa.ForeignKey("dns_providers.id", ondelete="RESTRICT"),
            nullable=False,
            index=True,
        ),
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
        *_common(),
        sa.Column(
            "server_id",
            sa.Uuid(),
            sa.ForeignKey("servers.id", ondelete="CASCADE"),
            nullable=False,
        ),
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
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column(
            "tenant_id",
            sa.Uuid(),
            sa.ForeignKey("tenants.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column(
            "domain_id",
            sa.Uuid(),
            sa.ForeignKey("mail_domains.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
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
