"""Flushing with uniqueness violations reported as a Conflict naming the field; one
insert-or-update for both databases, and the dialect's INSERT (with ON CONFLICT) for the
statements that need more."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.errors import Conflict


async def flush_unique(session: AsyncSession, field: str, message: str) -> None:
    """Flush pending writes; a unique-constraint violation becomes ``Conflict(field)``.

    The caller's transaction is rolled back by the session context when the error leaves it,
    so nothing is half-written.
    """
    try:
        await session.flush()
    except IntegrityError as exc:
        text = str(exc.orig).lower()
        if "unique" in text or "duplicate" in text:
            raise Conflict(message, field=field) from None
        raise


def insert_for(session: AsyncSession, table: Any) -> postgresql.Insert | sqlite.Insert:
    """``INSERT`` into ``table`` (a model or a Table) in the session's dialect, which has
    ``ON CONFLICT`` (``on_conflict_do_nothing`` / ``on_conflict_do_update``) on both."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


async def upsert(
    session: AsyncSession,
    model: type[Any],
    row: dict[str, Any] | Sequence[dict[str, Any]],
    *,
    keys: Sequence[str],
    update: Sequence[str],
) -> None:
    """Insert ``row``, or where a row with the same ``keys`` (a unique constraint) exists,
    set its ``update`` columns to the new values: one statement, no read-then-write race.
    A list of rows (distinct keys) goes in one multi-row statement."""
    statement = insert_for(session, model).values(row)
    statement = statement.on_conflict_do_update(
        index_elements=list(keys), set_={name: statement.excluded[name] for name in update}
    )
    await session.execute(statement)
