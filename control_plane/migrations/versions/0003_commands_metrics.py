"""Commands, raw metric samples and 1-minute rollups.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from control_plane.db.base import UTCDateTime
from control_plane.db.rls import disable_tenant_rls, enable_tenant_rls

revision: str = "0003"
down_revision: str | None = "0002"
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


def _server_fk(primary_key: bool = False) -> sa.Column[object]:
    return sa.Column(
        "server_id",
        sa.Uuid(),
        sa.ForeignKey("servers.id", ondelete="CASCADE"),
        nullable=False,
        primary_key=primary_key,
    )


def upgrade() -> None:
    op.create_table(
        "commands",
        sa.Column("id", sa.Uuid(), primary_key=True),
        _tenant_fk(),
        _server_fk(),
        sa.Column("idempotency_key", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("progress_percent", sa.Integer(), nullable=False),
        sa.Column("progress_message", sa.String(500), nullable=False),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("timeout_seconds", sa.Float(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("deadline_at", UTCDateTime(), nullable=True),
        sa.Column("cancel_requested_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.UniqueConstraint("server_id", "idempotency_key", name="uq_commands_server_key"),
    )
    op.create_index("ix_commands_state_server", "commands", ["state", "server_id"])
    op.create_table(
        "metric_samples",
        _server_fk(primary_key=True),
        sa.Column("sampled_at", UTCDateTime(), primary_key=True),
        _tenant_fk(),
        sa.Column("batch_sequence", sa.BigInteger(), nullable=False),
        *[
            sa.Column(name, sa.Float(), nullable=False)
            for name in ("cpu_percent", "load1", "load5", "load15")
        ],
        *[
            sa.Column(name, sa.BigInteger(), nullable=False)
            for name in (
                "memory_total_bytes",
                "memory_used_bytes",
                "memory_available_bytes",
                "swap_total_bytes",
                "swap_used_bytes",
                "disk_read_bytes",
                "disk_write_bytes",
                "net_rx_bytes",
                "net_tx_bytes",
            )
        ],
        sa.Column("process_count", sa.Integer(), nullable=False),
        sa.Column("filesystems", sa.Text(), nullable=False),
    )
    op.create_table(
        "metric_rollups_1m",
        _server_fk(primary_key=True),
        sa.Column("metric", sa.String(32), primary_key=True),
        sa.Column("bucket", UTCDateTime(), primary_key=True),
        _tenant_fk(),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("sum", sa.Float(), nullable=False),
        sa.Column("min", sa.Float(), nullable=False),
        sa.Column("max", sa.Float(), nullable=False),
    )
    for table in ("commands", "metric_samples", "metric_rollups_1m"):
        enable_tenant_rls(table)


def downgrade() -> None:
    for table in ("metric_rollups_1m", "metric_samples", "commands"):
        disable_tenant_rls(table)
        op.drop_table(table)
