"""Fetching one object by id, or the 404 its absence means (also for another tenant's)."""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.errors import NotFound

T = TypeVar("T")


async def get_by_id(
    session: AsyncSession,
    model: type[T],
    ident: uuid.UUID,
    resource: str,
    *,
    field: str | None = None,
) -> T:
    """In a tenant-scoped session another tenant's row is simply not found."""
    column: Any = model.id  # type: ignore[attr-defined]
    found = await session.scalar(select(model).where(column == ident))
    if found is None:
        raise NotFound(resource, ident, field=field)
    return found
