"""The cost line: what every report, budget and statement reads (see ``rating``)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from decimal import Decimal


@dataclass(slots=True)
class CostLine:
    """What one resource of one server cost one workspace on one UTC day (unrounded).
    ``priced`` False: no price was known for it, so ``amount`` is 0 and reports say
    "unpriced" rather than free. Not frozen: a month is ~70 lines a server, and a frozen
    dataclass is several times slower to make (treat lines as read-only)."""

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
    priced: bool = True
