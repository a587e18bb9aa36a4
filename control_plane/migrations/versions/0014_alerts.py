"""Alerts: channels, escalation policies, notifications and their deliveries.

Also ``escalation_policy_id`` on workspaces and servers (set NULL when the policy goes).
Fleet rows have a NULL tenant: row-level security hides them from tenant sessions.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30
"""

from collections.abc import Callable, Sequence

import sqlalchemy as sa
from alembic import op

from control_plane.db.rls import enable_tenant_rls
from control_plane.migrations.columns import drop_tenant_tables, moment, reference, timestamps

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = (
    "alert_channels",
    "escalation_policies",
    "alert_notifications",
    "alert_notification_incidents",
    "alert_deliveries",
    "alert_delivery_attempts",
)
_ASSIGNED = ("workspaces", "servers")


def _id() -> sa.Column[object]:
    return sa.Column("id", sa.Uuid(), primary_key=True)


def _tenant() -> sa.Column[object]:
    return reference("tenant_id", "tenants", nullable=True)


def upgrade() -> None:
    op.create_table(
        "alert_channels",
        _id(),
        _tenant(),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("config", sa.Text(), nullable=False),
        sa.Column("quiet_hours", sa.Text(), nullable=True),
        sa.Column("has_secret", sa.Boolean(), nullable=False),
        *timestamps(),
    )
    op.create_table(
        "escalation_policies",
        _id(),
        _tenant(),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("steps", sa.Text(), nullable=False),
        sa.Column("repeat", sa.Integer(), nullable=False),
        sa.Column("repeat_interval_minutes", sa.Float(), nullable=True),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        *timestamps(),
    )
    op.create_table(
        "alert_notifications",
        _id(),
        _tenant(),
        moment("created_at", index=True),
        sa.Column("event", sa.String(24), nullable=False),
        sa.Column("dedup_key", sa.String(200), nullable=False, index=True),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=True),
        sa.Column("in_app", sa.Boolean(), nullable=False),
        moment("read_at", nullable=True),
        moment("failed_at", nullable=True),
    )
    op.create_table(
        "alert_notification_incidents",
        reference("notification_id", "alert_notifications", index=False),
        sa.Column("incident_id", sa.Uuid(), nullable=False, index=True),
        _tenant(),
        sa.PrimaryKeyConstraint("notification_id", "incident_id"),
    )
    op.create_table(
        "alert_deliveries",
        _id(),
        _tenant(),
        reference("notification_id", "alert_notifications"),
        sa.Column("channel_id", sa.Uuid(), nullable=False, index=True),
        sa.Column("channel_name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        moment("created_at"),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        moment("next_attempt_at", nullable=True),
        moment("lease_until", nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        moment("delivered_at", nullable=True),
    )
    op.create_index("ix_alert_deliveries_due", "alert_deliveries", ["status", "next_attempt_at"])
    op.create_table(
        "alert_delivery_attempts",
        _id(),
        _tenant(),
        reference("delivery_id", "alert_deliveries"),
        moment("at"),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
    )
    for table in _TABLES:
        enable_tenant_rls(table)
    for table in _ASSIGNED:
        _add_policy_column(table)


def _fk(table: str) -> str:
    return f"fk_{table}_escalation_policy_id_escalation_policies"


def _sqlite() -> bool:
    return bool(op.get_bind().dialect.name == "sqlite")


def _fk_clause(table: str) -> str:
    return (
        f"CONSTRAINT {_fk(table)} FOREIGN KEY(escalation_policy_id) "
        "REFERENCES escalation_policies (id) ON DELETE SET NULL"
    )


def _rewrite_sqlite_table(table: str, change: Callable[[str], str]) -> None:
    """Change a table's stored definition in place (SQLite's documented procedure for
    constraint changes that leave the stored rows as they are: lang_altertable.html §7).

    A batch copy would drop and recreate ``servers``, and with foreign keys on, dropping
    it cascades into every table that references it.
    """
    bind = op.get_bind()
    query = "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?"
    sql = bind.exec_driver_sql(query, (table,)).scalar_one()
    version = bind.exec_driver_sql("PRAGMA schema_version").scalar_one()
    bind.exec_driver_sql("PRAGMA writable_schema = ON")
    bind.exec_driver_sql(
        "UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = ?",
        (change(sql), table),
    )
    bind.exec_driver_sql(f"PRAGMA schema_version = {int(version) + 1}")
    bind.exec_driver_sql("PRAGMA writable_schema = OFF")


def _add_policy_column(table: str) -> None:
    if _sqlite():
        op.execute(f"ALTER TABLE {table} ADD COLUMN escalation_policy_id CHAR(32)")
        _rewrite_sqlite_table(
            table, lambda sql: f"{sql.rstrip()[:-1].rstrip()}, \n\t{_fk_clause(table)}\n)"
        )
    else:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("escalation_policy_id", sa.Uuid(), nullable=True))
            batch.create_foreign_key(
                _fk(table), "escalation_policies", ["escalation_policy_id"], ["id"],
                ondelete="SET NULL",
            )  # fmt: skip
    op.create_index(f"ix_{table}_escalation_policy_id", table, ["escalation_policy_id"])


def _drop_policy_column(table: str) -> None:
    op.drop_index(f"ix_{table}_escalation_policy_id", table)
    if _sqlite():
        _rewrite_sqlite_table(table, lambda sql: sql.replace(f", \n\t{_fk_clause(table)}", ""))
        op.execute(f"ALTER TABLE {table} DROP COLUMN escalation_policy_id")
    else:
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(_fk(table), type_="foreignkey")
            batch.drop_column("escalation_policy_id")


def downgrade() -> None:
    for table in _ASSIGNED:
        _drop_policy_column(table)
    drop_tenant_tables(_TABLES)
