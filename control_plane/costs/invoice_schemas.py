"""Provider invoices as the API shows them."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal

from control_plane.schemas import ResponseModel


class InvoiceLineOut(ResponseModel):
    """``expected`` null: MailFleet has no figure for the line (no instance id, no server
    with it — a deleted server's ledger keeps no instance id — or another currency):
    unknown, neither matched nor flagged."""

    position: int
    instance_id: str
    description: str
    invoiced: Decimal
    tenant_id: uuid.UUID | None
    server_id: uuid.UUID | None
    expected: Decimal | None
    variance: Decimal | None
    flagged: bool


class InvoiceOut(ResponseModel):
    id: uuid.UUID
    provider: str
    reference: str
    period_start: date
    period_end: date
    currency: str
    total: Decimal
    tolerance_percent: Decimal
    imported_by: str | None
    created_at: datetime


class InvoiceDetailOut(InvoiceOut):
    lines: list[InvoiceLineOut]
