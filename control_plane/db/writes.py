"""Flushing with uniqueness violations reported as a Conflict naming the field."""

from __future__ import annotations

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
