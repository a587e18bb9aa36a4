"""Keyset pagination by id: ids are UUIDv7, so id order is creation order."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: Sequence[T]
    next_after: uuid.UUID | None


async def paginate(
    session: AsyncSession,
    stmt: Select[Any],
    id_column: Any,
    after: uuid.UUID | None,
    limit: int,
    *,
    newest_first: bool = False,
) -> Page[Any]:
    """Run ``stmt`` for one page of at most ``limit`` rows following the id ``after``
    (``newest_first``: in descending id order, so ``after`` is the last, oldest, row seen)."""
    if after is not None:
        stmt = stmt.where(id_column < after if newest_first else id_column > after)
    order = id_column.desc() if newest_first else id_column
    rows = (await session.scalars(stmt.order_by(order).limit(limit + 1))).all()
    more = len(rows) > limit
    items = rows[:limit]
    return Page(items=items, next_after=items[-1].id if more else None)
