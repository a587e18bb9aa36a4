"""Reading a server's series back at a step, from the tier that holds it (the contract).

Steps and tiers: ``raw`` reads ``metric_samples`` (14 days); ``1m``, ``5m``, ``15m`` merge
``metric_rollups_1m`` (90 days); ``1h`` and ``1d`` merge ``metric_rollups_1h`` (2 years).
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

UsageStep = Literal["raw", "1m", "5m", "15m", "1h", "1d"]


@dataclass(frozen=True, slots=True)
class Point:
    """One bucket of one series (for ``raw``: one sample, count 1, avg = min = max)."""

    t: datetime
    avg: float
    min: float
    max: float
    count: int


async def read_series(
    session: AsyncSession,
    server_id: uuid.UUID,
    start: datetime,
    end: datetime,
    step: UsageStep,
    names: Collection[str] | None = None,
) -> dict[str, list[Point]]:
    """Series name → its points in [start, end) at ``step``, oldest first (``names``: only
    those series; None: all). Raises InvalidInput (field ``query.step``/``query.from``)
    when the tier for ``step`` does not reach back to ``start``."""
    raise NotImplementedError("issue 16: the usage helper implements this")
