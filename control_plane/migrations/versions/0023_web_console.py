"""The web console: server-side sessions and failed sign-ins (the rate limit).

Both tables are read before the caller's tenant is known, by system sessions only: the
tenant role gets no grant on them, so a tenant session can neither read nor write them.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from control_plane.migrations.columns import moment, reference

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "web_sessions",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False),
        reference("api_key_id", "api_keys"),
        reference("tenant_id", "tenants", index=False, nullable=True, ondelete="SET NULL"),
        moment("created_at"),
        moment("last_seen_at"),
        sa.UniqueConstraint("token_hash", name="uq_web_sessions_token_hash"),
    )
    op.create_table(
        "web_login_failures",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("address", sa.String(64), nullable=False),
        moment("at"),
    )
    op.create_index("ix_web_login_failures_address_at", "web_login_failures", ["address", "at"])


def downgrade() -> None:
    op.drop_table("web_login_failures")
    op.drop_table("web_sessions")
