"""Rating: the ledger × the price catalog → unrounded daily cost lines, each allocated to a
workspace (or to none: idle/unallocated). Everything else (reports, projections, budgets,
statements, reconciliation) reads these lines, so there is one rule for what anything cost.

Rules (see the issue 17 closing note): a server span costs its plan's monthly price × the
hours held ÷ the hours of that calendar month, split at price changes; IP-hours beyond one
address per server-hour at the IP price the same way; backup storage the day's bytes as
GB × the GB-month price ÷ the days of the month; bandwidth the GB sent beyond the plan's
monthly allowance, on the day the month's total crosses it. A server owned by a workspace
costs that workspace; a shared one (no workspace) is split by the day's share readings
per the tenant's ``cost_split``; no weights: idle.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

RESOURCES = ("server", "ip", "backup_storage", "bandwidth")


@dataclass(frozen=True, slots=True)
class CostLine:
    """What one resource of one server cost one workspace on one UTC day (unrounded)."""

    day: date
    tenant_id: uuid.UUID
    workspace_id: uuid.UUID | None  # None: idle / unallocated
    server_id: uuid.UUID
    server_name: str
    provider: str
    resource: str  # server | ip | backup_storage | bandwidth
    item: str  # the plan, the address, the repository kind, ''
    currency: str
    amount: Decimal
    quantity: Decimal  # hours, IP-hours, GB-days, GB
    unit: str  # hour | ip-hour | gb-day | gb


async def rate(
    session: AsyncSession,
    start: date,
    end: date,
    *,
    now: datetime,
    tenant_id: uuid.UUID | None = None,
    workspace_id: uuid.UUID | None = None,
) -> list[CostLine]:
    """The cost lines of the days [start, end) up to ``now`` (nothing is rated past
    ``now``: today is partial), for one tenant (or all, admin) and one workspace (or
    all, idle included). Tenant-scoped sessions see their own tenant only."""
    raise NotImplementedError  # issue 17: rating helper
