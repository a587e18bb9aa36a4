"""The audit log: append-only (triggers refuse UPDATE and DELETE on both databases, and the
tenant role is granted only SELECT and INSERT), tenant-scoped by row-level security.

``tenant_id`` is no foreign key: a tenant's events outlive it (and a cascade would be a
DELETE the triggers refuse). NULL marks admin-only events: the policy's ``tenant_id =
<current>`` is never true for NULL, so no tenant sees them or can write one.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from control_plane.db.base import UTCDateTime
from control_plane.db.rls import disable_tenant_rls, enable_tenant_rls
from control_plane.db.tenancy import TENANT_ROLE

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REFUSAL = "audit events are append-only"


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("tenant_id", sa.Uuid(), nullable=True, index=True),
        sa.Column("at", UTCDateTime(), nullable=False, index=True),
        sa.Column("actor_kind", sa.String(16), nullable=False),
        sa.Column("key_id", sa.Uuid(), nullable=True, index=True),
        sa.Column("key_name", sa.String(200), nullable=True),
        sa.Column("key_hint", sa.String(32), nullable=True),
        sa.Column("user", sa.String(200), nullable=True),
        sa.Column("address", sa.String(64), nullable=False),
        sa.Column("action", sa.String(100), nullable=False),
        sa.Column("object_type", sa.String(50), nullable=True),
        sa.Column("object_id", sa.Uuid(), nullable=True),
        sa.Column("request", sa.String(300), nullable=False),
        sa.Column("status", sa.SmallInteger(), nullable=True),
        sa.Column("succeeded", sa.Boolean(), nullable=False),
    )
    op.create_index("ix_audit_events_object", "audit_events", ["object_type", "object_id"])
    enable_tenant_rls("audit_events")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"REVOKE UPDATE, DELETE ON audit_events FROM {TENANT_ROLE}")
        op.execute(
            "CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN RAISE EXCEPTION '{REFUSAL}' USING ERRCODE = 'insufficient_privilege'; END $$"
        )
        op.execute(
            "CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events "
            "FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()"
        )
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_events_no_{verb.lower()} BEFORE {verb} ON audit_events "
                f"BEGIN SELECT RAISE(ABORT, '{REFUSAL}'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_events_append_only ON audit_events")
        op.execute("DROP FUNCTION IF EXISTS audit_events_append_only()")
    else:
        for verb in ("update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS audit_events_no_{verb}")
    disable_tenant_rls("audit_events")
    op.drop_table("audit_events")
