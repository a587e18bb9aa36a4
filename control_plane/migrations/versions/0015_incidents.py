"""Incidents with their timeline, silences, maintenance windows.

Revision ID: 0015
Revises: 0014
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

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("incidents", "incident_events", "silences", "maintenance_windows")
OPEN_KEY_WHERE = sa.text("state <> 'resolved'")


def upgrade() -> None:
    op.create_table(
        "incidents",
        *tenant_row(),
        *timestamps(),
        sa.Column("subject_kind", sa.String(16), nullable=False),
        sa.Column("subject_id", sa.String(255), nullable=False),
        sa.Column("check", sa.String(200), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("server_id", sa.Uuid(), nullable=True, index=True),
        sa.Column("workspace_id", sa.Uuid(), nullable=True),
        moment("opened_at"),
        moment("last_seen_at"),
        moment("acknowledged_at", nullable=True),
        sa.Column("acknowledged_by", sa.String(300), nullable=True),
        moment("resolved_at", nullable=True),
        sa.Column("resolved_by", sa.String(300), nullable=True),
        sa.Column("resolution", sa.Text(), nullable=True),
        sa.Column("group_key", sa.Uuid(), nullable=True, index=True),
        sa.Column("policy_id", sa.Uuid(), nullable=True),
        sa.Column("escalation_step", sa.Integer(), nullable=True),
        sa.Column("escalation_round", sa.Integer(), nullable=False, server_default="0"),
        moment("next_escalation_at", nullable=True, index=True),
        moment("last_notified_at", nullable=True),
        sa.Column("notified_channels", sa.Text(), nullable=False, server_default=""),
        sa.Column("suppressed_by", sa.String(300), nullable=True),
    )
    op.create_index(
        "uq_incidents_open_key",
        "incidents",
        ["tenant_id", "subject_kind", "subject_id", "check"],
        unique=True,
        postgresql_where=OPEN_KEY_WHERE,
        sqlite_where=OPEN_KEY_WHERE,
    )
    op.create_index("ix_incidents_state_server", "incidents", ["state", "server_id"])
    op.create_table(
        "incident_events",
        *tenant_row(),
        reference("incident_id", "incidents", index=False),
        moment("at"),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("actor", sa.String(300), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=True),
        sa.Column("notification_id", sa.Uuid(), nullable=True),
    )
    op.create_index("ix_incident_events_incident_id_id", "incident_events", ["incident_id", "id"])
    op.create_table(
        "silences",
        *tenant_row(),
        *timestamps(),
        sa.Column("server_id", sa.Uuid(), nullable=True),
        sa.Column("check", sa.String(200), nullable=True),
        sa.Column("severity", sa.String(16), nullable=True),
        moment("starts_at"),
        moment("ends_at", index=True),
        sa.Column("created_by", sa.String(300), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
    )
    op.create_table(
        "maintenance_windows",
        *tenant_row(),
        *timestamps(),
        reference("server_id", "servers"),
        moment("starts_at"),
        moment("ends_at", index=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(300), nullable=False),
    )
    for table in TABLES:
        enable_tenant_rls(table)


def downgrade() -> None:
    drop_tenant_tables(TABLES)
