"""Columns every tenant table repeats, for the migrations: its identity, a reference to
another table, its timestamps. (Earlier migrations spell them out; they stay as they ran.)"""

from __future__ import annotations

import sqlalchemy as sa

from control_plane.db.base import UTCDateTime


def tenant_row() -> list[sa.Column[object]]:
    """``id`` and the owning ``tenant_id`` (indexed, deleted with the tenant)."""
    return [
        sa.Column("id", sa.Uuid(), primary_key=True),
        reference("tenant_id", "tenants"),
    ]


def reference(
    name: str,
    table: str,
    *,
    index: bool = True,
    nullable: bool = False,
    ondelete: str = "CASCADE",
) -> sa.Column[object]:
    return sa.Column(
        name,
        sa.Uuid(),
        sa.ForeignKey(f"{table}.id", ondelete=ondelete),
        nullable=nullable,
        index=index,
    )


def timestamps() -> list[sa.Column[object]]:
    return [
        sa.Column("created_at", UTCDateTime(), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), server_default=sa.func.now(), nullable=False),
    ]
