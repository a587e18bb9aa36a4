"""Cost reports: rated lines summed by workspace, server, resource or day, rounded to cents
per group; month to date and the projection to month end (run rate plus known changes)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession


@dataclass(frozen=True)
class MonthFigures:
    """One currency's figures for a month: cost so far and projected to its end (cents)."""

    month: date  # its first day
    currency: str
    actual: Decimal
    projected: Decimal


async def month_figures(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    workspace_id: uuid.UUID | None,
    month: date,
    now: datetime,
) -> list[MonthFigures]:
    """The tenant's (or one workspace's) month-to-date cost and month-end projection, one
    entry per currency (budgets compare theirs)."""
    raise NotImplementedError  # issue 17: reports helper
