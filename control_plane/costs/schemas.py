"""Cost report bodies: amounts are decimal strings with their currency, never floats."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal

from control_plane.schemas import ResponseModel


class TotalOut(ResponseModel):
    currency: str
    cost: Decimal
    billed: Decimal  # cost plus each workspace's markup (idle is billed to no one)
    unpriced: bool  # some of it had no price: counted as 0, not free


class GroupOut(ResponseModel):
    key: str  # a workspace id ('idle'), a server id, a resource or an ISO day
    name: str
    currency: str
    cost: Decimal
    billed: Decimal
    unpriced: bool


class MonthOut(ResponseModel):
    month: date
    currency: str
    actual: Decimal  # month to date
    projected: Decimal  # to month end: run rate plus known changes


class CostReportOut(ResponseModel):
    start: datetime
    end: datetime  # rated up to here: the range's end, or now
    group_by: str
    tenant_id: uuid.UUID | None
    workspace_id: uuid.UUID | None
    totals: list[TotalOut]
    groups: list[GroupOut]
    idle: list[TotalOut]
    month: date
    month_to_date: list[MonthOut]
