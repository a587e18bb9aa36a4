"""Reconciliation: a provider's invoice (CSV) against MailFleet's own figures per server.

CSV: a header row naming ``instance_id``, ``description`` and ``amount`` (other columns
are ignored), one line per invoiced item. A line is matched to the server of that provider
with that instance id; MailFleet's figure is the server's rated cost over the invoice's
period (server plan, extra IPs, bandwidth: what a provider bills; backup storage is not),
on every line of that server, and the variance compares it with the sum of the server's
lines. Flagged: the variance is above the tolerance, a percent of the invoiced amount.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections import defaultdict
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.costs.models import InvoiceLine, ProviderInvoice
from control_plane.costs.rating import rate
from control_plane.errors import InvalidInput
from control_plane.servers.models import Server

COLUMNS = ("instance_id", "description", "amount")
PROVIDER_BILLED = ("server", "ip", "bandwidth")
CENT = Decimal("0.01")


def parse(text: str) -> list[tuple[str, str, Decimal]]:
    """The CSV's lines; the first bad one is a 422 naming its line and column."""
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise InvalidInput(f"line 1: the header lacks {', '.join(missing)}", field="body.line1")
    lines = []
    for row in reader:
        n = reader.line_num
        if None in row:  # restkey: an unquoted comma, e.g. in 1,234.00
            raise InvalidInput(f"line {n}: more fields than the header", field=f"body.line{n}")
        raw = (row.get("amount") or "").strip()
        try:
            amount = Decimal(raw)
        except InvalidOperation:
            amount = Decimal("NaN")
        if not amount.is_finite() or amount.as_tuple().exponent < -2 or abs(amount) >= 10**10:  # type: ignore[operator]
            raise InvalidInput(
                f"line {n}, column amount: {raw[:40]!r} is not an amount (e.g. 12.50)",
                field=f"body.line{n}.amount",
            )
        instance = (row.get("instance_id") or "").strip()
        if len(instance) > 128:
            raise InvalidInput(f"line {n}, column instance_id: over 128 characters",
                               field=f"body.line{n}.instance_id")  # fmt: skip
        lines.append((instance, (row.get("description") or "").strip(), amount))
    if not lines:
        raise InvalidInput("the CSV has no lines after its header", field="body")
    return lines


async def import_invoice(
    session: AsyncSession,
    *,
    text: str,
    provider: str,
    reference: str,
    period_start: date,
    period_end: date,
    currency: str,
    tolerance: Decimal,
    imported_by: str | None,
    now: datetime,
) -> ProviderInvoice:
    if period_end <= period_start:
        raise InvalidInput("period_end is after period_start", field="query.period_end")
    parsed = parse(text)
    invoice = ProviderInvoice(
        provider=provider, reference=reference, period_start=period_start,
        period_end=period_end, currency=currency, total=sum(a for *_, a in parsed),
        tolerance_percent=tolerance, imported_by=imported_by,
    )  # fmt: skip
    session.add(invoice)
    await session.flush()
    ids = {i for i, *_ in parsed if i}
    servers = {
        s.instance_id: s
        for s in await session.scalars(
            select(Server).where(Server.provider == provider, Server.instance_id.in_(ids))
        )
    }
    expected: dict[uuid.UUID, Decimal | None] = {}
    for tenant_id in {s.tenant_id for s in servers.values()}:
        sums: dict[uuid.UUID, Decimal] = defaultdict(Decimal)
        other: set[uuid.UUID] = set()
        for line in await rate(session, period_start, period_end, now=now, tenant_id=tenant_id):
            if line.resource not in PROVIDER_BILLED:
                continue
            if line.currency != currency:
                other.add(line.server_id)
            sums[line.server_id] += line.amount
        for held in servers.values():
            if held.tenant_id == tenant_id:
                found = sums.get(held.id, Decimal(0))
                expected[held.id] = (
                    None if held.id in other else found.quantize(CENT, ROUND_HALF_UP)
                )
    invoiced: dict[uuid.UUID, Decimal] = defaultdict(Decimal)
    for instance, _, amount in parsed:
        if instance in servers:
            invoiced[servers[instance].id] += amount
    for position, (instance, description, amount) in enumerate(parsed, 1):
        server = servers.get(instance)
        mine = expected.get(server.id) if server is not None else None
        variance = None
        flagged = False
        if server is not None and mine is not None:
            variance = invoiced[server.id] - mine
            flagged = abs(variance) * 100 > tolerance * abs(invoiced[server.id])
        session.add(InvoiceLine(
            invoice_id=invoice.id, position=position, instance_id=instance,
            description=description, invoiced=amount,
            tenant_id=server.tenant_id if server else None,
            server_id=server.id if server else None,
            expected=mine, variance=variance, flagged=flagged,
        ))  # fmt: skip
    await session.flush()
    await session.refresh(invoice)
    return invoice


async def lines_of(session: AsyncSession, invoice_id: uuid.UUID) -> list[InvoiceLine]:
    found = await session.scalars(
        select(InvoiceLine)
        .where(InvoiceLine.invoice_id == invoice_id)
        .order_by(InvoiceLine.position)
    )
    return list(found.all())
