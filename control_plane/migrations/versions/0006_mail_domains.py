"""Mail domains (with their DKIM selector and public key) and mailboxes, with row-level
security; the DKIM selector each MailU server signs with.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from control_plane.db.base import UTCDateTime
from control_plane.db.rls import disable_tenant_rls, enable_tenant_rls

revision: str = "0006"
down_revision: str | None = "0005"
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
        sa.Column("command_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", UTCDateTime(), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), server_default=sa.func.now(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "mail_domains",
        *_common(),
        sa.Column(
            "server_id",
            sa.Uuid(),
            sa.ForeignKey("servers.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("name", sa.String(253), nullable=False),
        sa.Column("dkim_selector", sa.String(63), nullable=False),
        sa.Column("dkim_public_key", sa.Text(), nullable=False),
        sa.UniqueConstraint("name", name="uq_mail_domains_name"),
    )
    op.create_table(
        "mailboxes",
        *_common(),
        sa.Column(
            "domain_id",
            sa.Uuid(),
            sa.ForeignKey("mail_domains.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("quota_bytes", sa.BigInteger(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("displayed_name", sa.String(160), nullable=False),
        sa.Column("credentials_taken_at", UTCDateTime(), nullable=True),
        sa.UniqueConstraint("address", name="uq_mailboxes_address"),
    )
    for table in ("mail_domains", "mailboxes"):
        enable_tenant_rls(table)
    op.add_column("servers", sa.Column("dkim_selector", sa.String(63), nullable=True))


def downgrade() -> None:
    op.drop_column("servers", "dkim_selector")
    for table in ("mailboxes", "mail_domains"):
        disable_tenant_rls(table)
        op.drop_table(table)
