"""What every tenant table's migration repeats: its identity, a reference to another table,
its timestamps, and dropping it with its row-level security. (Earlier migrations spell them
out; they stay as they ran.)"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from control_plane.db.base import UTCDateTime
from control_plane.db.rls import disable_tenant_rls


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


def moment(name: str, *, nullable: bool = False, index: bool = False) -> sa.Column[object]:
    """A point in time, stored as UTC whatever the database (see UTCDateTime)."""
    return sa.Column(name, UTCDateTime(), nullable=nullable, index=index)


def timestamps() -> list[sa.Column[object]]:
    return [
        sa.Column("created_at", UTCDateTime(), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), server_default=sa.func.now(), nullable=False),
    ]


def drop_tenant_tables(tables: Sequence[str]) -> None:
    """A downgrade's end: ``tables`` (in the order they were made) lose their row-level
    security policy and go, last made first, so references go before what they name."""
    for table in reversed(tables):
        disable_tenant_rls(table)
        op.drop_table(table)
