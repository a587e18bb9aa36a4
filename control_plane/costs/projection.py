"""The rest of a month as it will go if nothing changes but what is already known: the
run rate of what is held now plus known changes.

Spans still open run on to the month's end at the prices of each day (a price set ahead
applies from its date); ended ones (a deleted server, a resized server's old plan) stop.
A server still held keeps its latest backup size and sends at the month's average daily
bandwidth so far; a shared server keeps its latest split.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import date, datetime, timedelta
from decimal import Decimal

from control_plane.costs.engine import DAY, MICRO, Ledger, Rater, Reading, day_start
from control_plane.costs.lines import CostLine
from control_plane.costs.rating import Loaded


def project(
    loaded: Loaded,
    now: datetime,
    month_end: datetime,
    workspace_id: uuid.UUID | None,
    *,
    by_day: bool = True,
) -> list[CostLine]:
    """The lines of [now, month_end) for the month ``loaded`` covers up to ``now``."""
    ledger = loaded.ledger
    held = {s.server_id for s in ledger.spans if s.resource == "server" and s.ended_at is None}
    today = now.date()
    days = [
        today + timedelta(days=n)
        for n in range((month_end - MICRO).date().toordinal() - today.toordinal() + 1)
    ]
    future = Ledger(spans=ledger.spans)
    _continue_storage(ledger, held, days, future)
    carry = _continue_bandwidth(ledger, held, now, month_end, days, future)
    _continue_shares(ledger, today, days, future)
    rater = Rater(future, loaded.prices, loaded.cost_split, by_day=by_day)
    rater.spans(now, month_end)
    rater.storage(now, month_end)
    rater.bandwidth(today, days[-1], carry=carry)
    lines = rater.result()
    if workspace_id is None:
        return lines
    return [line for line in lines if line.workspace_id == workspace_id]


def _continue_storage(
    ledger: Ledger, held: set[uuid.UUID], days: list[date], future: Ledger
) -> None:
    latest: dict[tuple[uuid.UUID, str], Reading] = {}
    for r in ledger.readings:
        if r.resource == "backup_storage" and r.server_id in held:
            key = (r.server_id, r.item)
            if key not in latest or latest[key].day < r.day:
                latest[key] = r
    for r in latest.values():
        future.readings.extend(_on(r, day, r.quantity) for day in days)


def _continue_bandwidth(
    ledger: Ledger,
    held: set[uuid.UUID],
    now: datetime,
    month_end: datetime,
    days: list[date],
    future: Ledger,
) -> dict[uuid.UUID, int]:
    """Each held server's month so far (the carry) and the month's average daily rate
    continued over what is left of it."""
    first = days[0].replace(day=1)
    sent: dict[uuid.UUID, int] = defaultdict(int)
    sample: dict[uuid.UUID, Reading] = {}
    for r in ledger.readings:
        if r.resource == "bandwidth" and r.server_id in held and r.day >= first:
            sent[r.server_id] += r.quantity
            sample[r.server_id] = r
    elapsed = Decimal((now - day_start(first)) // MICRO)
    if elapsed <= 0:
        return dict(sent)
    for server_id, total in sent.items():
        ahead = 0  # bytes from now to each day's end, whole: the days add up exactly
        for day in days:
            hi = min(month_end, day_start(day) + DAY)
            upto = int(Decimal(total) * ((hi - now) // MICRO) / elapsed)
            if upto > ahead:
                future.readings.append(_on(sample[server_id], day, upto - ahead))
            ahead = upto
    return dict(sent)


def _continue_shares(ledger: Ledger, today: date, days: list[date], future: Ledger) -> None:
    latest: dict[tuple[uuid.UUID, str], date] = {}
    for server_id, day, how in ledger.shares:
        key = (server_id, how)
        if day <= today and (key not in latest or latest[key] < day):
            latest[key] = day
    for (server_id, how), day in latest.items():
        weights = ledger.shares[(server_id, day, how)]
        for ahead in days:
            future.shares[(server_id, ahead, how)] = weights


def _on(r: Reading, day: date, quantity: int) -> Reading:
    return Reading(
        r.tenant_id, r.server_id, r.server_name, r.workspace_id, r.provider, r.resource,
        r.item, day, quantity,
    )  # fmt: skip
