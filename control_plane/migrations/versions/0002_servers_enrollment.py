"""Servers, agent certificates and join tokens.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from control_plane.db.base import UTCDateTime
from control_plane.db.rls import disable_tenant_rls, enable_tenant_rls

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _tenant_fk() -> sa.Column[object]:
    return sa.Column(
        "tenant_id",
        sa.Uuid(),
        sa.ForeignKey("tenants.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    )


def _server_fk() -> sa.Column[object]:
    return sa.Column(
        "server_id",
        sa.Uuid(),
        sa.ForeignKey("servers.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    )


def upgrade() -> None:
    op.create_table(
        "servers",
        sa.Column("id", sa.Uuid(), primary_key=True),
        _tenant_fk(),
        sa.Column(
            "workspace_id",
            sa.Uuid(),
            sa.ForeignKey("workspaces.id", ondelete="SET NULL"),
            nullable=True,
            index=True,
        ),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("agent_state", sa.String(16), nullable=False),
        sa.Column("agent_version", sa.String(64), nullable=True),
        sa.Column("hostname", sa.String(255), nullable=True),
        sa.Column("capabilities", sa.String(2000), nullable=False),
        sa.Column("enrolled_at", UTCDateTime(), nullable=True),
        sa.Column("last_heartbeat_at", UTCDateTime(), nullable=True),
        sa.Column("certificate_serial", sa.String(128), nullable=True),
        sa.Column("certificate_not_after", UTCDateTime(), nullable=True),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), server_default=sa.func.now(), nullable=False),
        sa.UniqueConstraint("tenant_id", "name", name="uq_servers_tenant_name"),
    )
    op.create_index("ix_servers_revoked_at", "servers", ["revoked_at"])
    op.create_table(
        "agent_certificates",
        sa.Column("serial", sa.String(128), primary_key=True),
        _tenant_fk(),
        _server_fk(),
        sa.Column("issued_at", UTCDateTime(), nullable=False),
        sa.Column("not_after", UTCDateTime(), nullable=False),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
    )
    op.create_table(
        "join_tokens",
        sa.Column("id", sa.Uuid(), primary_key=True),
        _tenant_fk(),
        _server_fk(),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("used_at", UTCDateTime(), nullable=True),
    )
    for table in ("servers", "agent_certificates", "join_tokens"):
        enable_tenant_rls(table)


def downgrade() -> None:
    for table in ("join_tokens", "agent_certificates", "servers"):
        disable_tenant_rls(table)
        op.drop_table(table)
