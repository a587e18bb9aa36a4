"""Incidents from signals: open, update, resolve (stub; filled in shortly)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.incidents.signals import Signal


async def observe(session: AsyncSession, signals: Sequence[Signal], now: datetime) -> None:
    """Turn confirmed signals into incidents in the caller's transaction."""
    return None
