"""Provisioning workflow columns on servers, and the server event history.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from control_plane.db.base import UTCDateTime
from control_plane.db.rls import disable_tenant_rls, enable_tenant_rls

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SERVER_COLUMNS = (
    ("region", sa.String(64)),
    ("plan", sa.String(64)),
    ("instance_id", sa.String(128)),
    ("ipv4", sa.String(45)),
    ("ssh_public_key", sa.Text()),
    ("ssh_key_downloaded_at", UTCDateTime()),
    ("state_changed_at", UTCDateTime()),
    ("failed_step", sa.String(24)),
    ("failure_reason", sa.Text()),
    ("next_step_at", UTCDateTime()),
    ("step_deadline_at", UTCDateTime()),
    ("lease_owner", sa.String(64)),
    ("lease_expires_at", UTCDateTime()),
)


def upgrade() -> None:
    # Plain ALTER TABLE on both databases: a batch (copy-and-rename) on SQLite would drop
    # the old table, and with foreign keys on that cascades to every row referencing it.
    for name, type_ in _SERVER_COLUMNS:
        op.add_column("servers", sa.Column(name, type_, nullable=True))
    # Servers made before the workflow existed were all `manual`: ready once enrolled.
    op.add_column(
        "servers", sa.Column("state", sa.String(24), nullable=False, server_default="enrolling")
    )
    op.add_column(
        "servers", sa.Column("step_attempts", sa.Integer(), nullable=False, server_default="0")
    )
    op.create_index("ix_servers_workflow_due", "servers", ["state", "next_step_at"])
    op.execute("UPDATE servers SET state = 'ready' WHERE enrolled_at IS NOT NULL")

    op.create_table(
        "server_events",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column(
            "tenant_id",
            sa.Uuid(),
            sa.ForeignKey("tenants.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column(
            "server_id", sa.Uuid(), sa.ForeignKey("servers.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("state", sa.String(24), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
    )
    op.create_index("ix_server_events_server_id_id", "server_events", ["server_id", "id"])
    enable_tenant_rls("server_events")


def downgrade() -> None:
    disable_tenant_rls("server_events")
    op.drop_table("server_events")
    op.drop_index("ix_servers_workflow_due", "servers")
    for name in ("state", "step_attempts", *(n for n, _ in reversed(_SERVER_COLUMNS))):
        op.drop_column("servers", name)
