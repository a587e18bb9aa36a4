"""Provider invoices imported and reconciled against MailFleet's figures (admin)."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Query, Request, status
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.api.context import AdminCtx
from control_plane.costs import invoices
from control_plane.costs.invoice_schemas import InvoiceDetailOut, InvoiceLineOut, InvoiceOut
from control_plane.costs.models import ProviderInvoice
from control_plane.db.base import utcnow
from control_plane.db.lookup import get_by_id
from control_plane.db.pagination import paginate
from control_plane.errors import InvalidInput
from control_plane.schemas import After, Limit, PageOut

router = APIRouter(prefix="/api/v1/costs/invoices", tags=["costs"])
MAX_BYTES = 5_000_000


@router.post("", status_code=status.HTTP_201_CREATED)
async def import_invoice(
    request: Request,
    ctx: AdminCtx,
    provider: Annotated[str, Query(min_length=1, max_length=32)],
    reference: Annotated[str, Query(min_length=1, max_length=100)],
    period_start: date,
    period_end: Annotated[date, Query(description="The day after the last day billed.")],
    currency: Annotated[str, Query(pattern=r"^[A-Z]{3}$")],
    tolerance_percent: Annotated[Decimal | None, Query(ge=0, le=100)] = None,
) -> InvoiceDetailOut:
    """The invoice's CSV is the request body, sent as ``Content-Type: text/csv`` (e.g.
    ``curl --data-binary @invoice.csv -H 'Content-Type: text/csv'``); the invoice's
    details are query parameters. Columns: ``instance_id``, ``description``, ``amount``.
    A bad line is a 422 naming its line and column, and nothing is stored."""
    body = await request.body()
    if len(body) > MAX_BYTES:
        raise InvalidInput(f"the CSV is over {MAX_BYTES} bytes", field="body")
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInput("the CSV is not UTF-8 text", field="body") from None
    tolerance = (
        tolerance_percent
        if tolerance_percent is not None
        else ctx.settings.invoice_tolerance_percent
    )
    async with ctx.session() as session:
        invoice = await invoices.import_invoice(
            session, text=text, provider=provider, reference=reference,
            period_start=period_start, period_end=period_end, currency=currency,
            tolerance=tolerance, imported_by=ctx.principal.key_name or None, now=utcnow(),
        )  # fmt: skip
        return await _detail(session, invoice)


@router.get("")
async def list_invoices(
    ctx: AdminCtx, after: After = None, limit: Limit = 100
) -> PageOut[InvoiceOut]:
    async with ctx.session() as session:
        page = await paginate(session, select(ProviderInvoice), ProviderInvoice.id, after, limit)
        return PageOut(
            items=[InvoiceOut.model_validate(i) for i in page.items], next_after=page.next_after
        )


@router.get("/{invoice_id}")
async def get_invoice(invoice_id: uuid.UUID, ctx: AdminCtx) -> InvoiceDetailOut:
    async with ctx.session() as session:
        invoice = await get_by_id(session, ProviderInvoice, invoice_id, "invoice")
        return await _detail(session, invoice)


async def _detail(session: AsyncSession, invoice: ProviderInvoice) -> InvoiceDetailOut:
    lines = await invoices.lines_of(session, invoice.id)
    return InvoiceDetailOut(
        **InvoiceOut.model_validate(invoice).model_dump(),
        lines=[InvoiceLineOut.model_validate(line) for line in lines],
    )
