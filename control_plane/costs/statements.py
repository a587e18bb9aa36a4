"""A workspace's monthly statement, what an agency sends its client: per server and
resource the billed amount (cost with the workspace's markup; never the cost itself),
the markup's fixed monthly fee as a line of its own, totals per currency."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.costs.engine import day_start, next_month
from control_plane.costs.markup import billed
from control_plane.costs.rating import rate
from control_plane.workspaces.models import Workspace

CENT = Decimal("0.01")
COLUMNS = ("period_start", "period_end", "server", "resource", "item", "quantity", "unit",
           "amount", "currency")  # fmt: skip
_templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(default=True),
)


@dataclass(frozen=True)
class StatementLine:
    server: str
    resource: str
    item: str
    quantity: Decimal
    unit: str
    amount: Decimal  # billed, cents
    currency: str


@dataclass(frozen=True)
class Statement:
    workspace: str
    start: date
    end: date  # exclusive
    lines: list[StatementLine]
    totals: dict[str, Decimal]


async def statement(
    session: AsyncSession, workspace: Workspace, month: date, now: datetime, currency: str
) -> Statement:
    """The month's lines (a month still running: up to ``now``, and that part of the fixed
    fee). ``currency``: the fee's when the month has no cost lines."""
    end = next_month(month)
    lines = await rate(
        session, month, end, now=now, tenant_id=workspace.tenant_id, workspace_id=workspace.id
    )
    groups: dict[tuple[str, str, str, str, str], list[Decimal]] = defaultdict(
        lambda: [Decimal(0), Decimal(0)]
    )
    for line in lines:
        group = groups[(line.server_name, line.resource, line.item, line.unit, line.currency)]
        group[0] += line.amount
        group[1] += line.quantity
    out = [
        StatementLine(server, resource, item, quantity.quantize(CENT), unit,
                      billed(cost, workspace.markup_percent, None, Decimal(1)).quantize(
                          CENT, ROUND_HALF_UP), cur)
        for (server, resource, item, unit, cur), (cost, quantity) in sorted(groups.items())
    ]  # fmt: skip
    if workspace.markup_fixed:
        whole = (day_start(end) - day_start(month)).total_seconds()
        done = min(max((now - day_start(month)).total_seconds(), 0), whole)
        fraction = Decimal(str(done)) / Decimal(str(whole))
        fee = billed(Decimal(0), None, workspace.markup_fixed, fraction)
        fee_currency = out[0].currency if out else currency
        out.append(StatementLine("", "service fee", "", fraction.quantize(CENT), "month",
                                 fee.quantize(CENT, ROUND_HALF_UP), fee_currency))  # fmt: skip
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for item in out:
        totals[item.currency] += item.amount
    return Statement(workspace.name, month, end, out, dict(totals))


def as_csv(found: Statement) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for line in found.lines:
        writer.writerow((found.start, found.end, line.server, line.resource, line.item,
                         line.quantity, line.unit, line.amount, line.currency))  # fmt: skip
    return buffer.getvalue()


def as_html(found: Statement, issued: datetime) -> str:
    return _templates.get_template("statement.html").render(s=found, issued=issued)
