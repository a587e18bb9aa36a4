"""Rating arithmetic over a loaded ledger (no database): exact ``Decimal`` throughout, per
span and per reading rather than per hour, so a month of 1,000 servers rates in a blink.

A ``Ledger`` holds spans, readings and split weights as plain tuples; ``Rater`` turns them
into ``CostLine``s for a window. The projection (report) feeds it a ledger continued past
now, so what is held now and what it will cost follow one rule.
"""

from __future__ import annotations

import calendar
import functools
import itertools
import re
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from control_plane.costs.allocation import Shares, Weights, split
from control_plane.costs.lines import CostLine
from control_plane.costs.prices import ANY_PROVIDER, PriceBook, PricePeriod, periods

DAY = timedelta(days=1)
MICRO = timedelta(microseconds=1)
DAY_US = 86_400_000_000
HOUR_US = Decimal(3_600_000_000)
GB = Decimal(1_000_000_000)
ZERO = Decimal(0)
NEVER = datetime.max.replace(tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(slots=True)  # not frozen: made by the ten thousand, frozen is slower
class Span:
    tenant_id: uuid.UUID
    server_id: uuid.UUID
    server_name: str
    workspace_id: uuid.UUID | None
    provider: str
    resource: str  # server | ip
    item: str
    started_at: datetime
    ended_at: datetime | None


@dataclass(slots=True)  # not frozen: made by the ten thousand, frozen is slower
class Reading:
    tenant_id: uuid.UUID
    server_id: uuid.UUID
    server_name: str
    workspace_id: uuid.UUID | None
    provider: str
    resource: str  # backup_storage | bandwidth
    item: str
    day: date
    quantity: int


@dataclass
class Ledger:
    spans: list[Span] = field(default_factory=list)
    readings: list[Reading] = field(default_factory=list)
    shares: Shares = field(default_factory=dict)


def day_start(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


MONTH_PATTERN = r"^(19|2\d)\d{2}-(0[1-9]|1[0-2])$"  # YYYY-MM, years 1900-2999


def month_of(text: str | None, today: date) -> date:
    """The first day of month ``text`` (YYYY-MM, see MONTH_PATTERN), or of ``today``'s
    month without one; ValueError for anything else (each caller names its own field)."""
    if not text:
        return month_start(today)
    if not re.match(MONTH_PATTERN, text):
        raise ValueError(f"not a month like 2026-11: {text!r}")
    return date(int(text[:4]), int(text[5:7]), 1)


def month_start(day: date) -> date:
    return day.replace(day=1)


def next_month(day: date) -> date:
    return (day.replace(day=28) + timedelta(days=4)).replace(day=1)


@functools.cache
def _days_of(year: int, month: int) -> int:
    return calendar.monthrange(year, month)[1]


def month_days(day: date) -> int:
    return _days_of(day.year, day.month)


def _us(delta: timedelta) -> int:
    return delta // MICRO


Segment = tuple[datetime, datetime, PricePeriod | None]
# A day's storage rating: Σ price × µs, unpriced µs, currency, the µs of [lo, hi) in it.
StorageDay = tuple[Decimal, int, str, int]


class Prices:
    """Lookups in the price book, cut at price changes; unpriced stretches are ``None``."""

    def __init__(self, book: PriceBook) -> None:
        self.book = book
        self._integrals: dict[tuple[str, str, str, int, int], tuple[Decimal, int, str]]
        self._integrals = {}
        self._plans: dict[tuple[str, str, datetime], PricePeriod | None] = {}

    def segments(
        self, provider: str, kind: str, item: str, lo: datetime, hi: datetime
    ) -> list[Segment]:
        """[lo, hi) cut where the price changes, each piece with its price (or None)."""
        out: list[Segment] = []
        at = lo
        for p in periods(self.book, provider, kind, item):
            end = p.end or NEVER
            if end <= at:
                continue
            if p.start >= hi:
                break
            if p.start > at:
                out.append((at, p.start, None))
                at = p.start
            stop = min(hi, end)
            out.append((at, stop, p))
            at = stop
            if at >= hi:
                break
        if at < hi:
            out.append((at, hi, None))
        return out

    def currency(self, provider: str, kind: str, item: str) -> str:
        """The currency an unpriced line is counted in (amount 0): the item's, else the
        provider's, else the catalog's (one currency in practice)."""
        found = periods(self.book, provider, kind, item)
        if found:
            return found[-1].currency
        for (prov, _, _), entries in sorted(self.book.items(), key=lambda e: e[0][0] != provider):
            if entries and prov in (provider, ANY_PROVIDER):
                return entries[-1].currency
        return next((e[-1].currency for e in self.book.values() if e), "")

    def integral(
        self, provider: str, kind: str, item: str, lo: datetime, hi: datetime
    ) -> tuple[Decimal, int, str]:
        """Σ price × microseconds over [lo, hi), the unpriced microseconds, the currency."""
        # Integers, not the instants: an aware datetime's hash asks its zone for the offset.
        key = (provider, kind, item, _us(lo - EPOCH), _us(hi - EPOCH))
        found = self._integrals.get(key)
        if found is None:
            total, unpriced, currency = ZERO, 0, ""
            for a, b, p in self.segments(provider, kind, item, lo, hi):
                if p is None:
                    unpriced += _us(b - a)
                else:
                    total += p.amount * _us(b - a)
                    currency = p.currency
            found = (total, unpriced, currency or self.currency(provider, kind, item))
            self._integrals[key] = found
        return found

    def plan_at(self, provider: str, plan: str, at: datetime) -> PricePeriod | None:
        key = (provider, plan, at)
        if key not in self._plans:
            self._plans[key] = next(
                (
                    p
                    for p in periods(self.book, provider, "plan", plan)
                    if p.start <= at < (p.end or NEVER)
                ),
                None,
            )
        return self._plans[key]


Emit = Callable[[CostLine], None]
# ``_split``'s arguments: ref, first day, resource, item, currency, amount, quantity, unit,
# priced, weights.
_Pool = tuple["Span | Reading", date, str, str, str, Decimal, Decimal, str, bool, "Weights | None"]


class Rater:
    """Cost lines of a ledger within [lo, hi), split per UTC day and at price changes.

    ``by_day`` False (a report not grouped by day): a workspace's own server is rated per
    month and price instead, and a shared server's days of the same weights in a month are
    summed before they are split; lines are dated their first day. The same sums (to far
    below a cent) with a tenth of the lines; ``result`` gives them."""

    def __init__(
        self,
        ledger: Ledger,
        prices: Prices,
        cost_split: dict[uuid.UUID, str],
        *,
        by_day: bool = True,
    ) -> None:
        self.ledger = ledger
        self.prices = prices
        self.cost_split = cost_split
        self.by_day = by_day
        self.lines: list[CostLine] = []
        # A shared server's amounts awaiting their split (not by_day), by month and weights.
        self._pooled: dict[tuple[object, ...], _Pool] = {}

    def result(self) -> list[CostLine]:
        """The lines rated so far, the pooled ones split."""
        for pool in self._pooled.values():
            self._split(*pool)
        self._pooled.clear()
        return self.lines

    # allocation -------------------------------------------------------------------------
    def _emit(
        self,
        ref: Span | Reading,
        day: date,
        resource: str,
        item: str,
        currency: str,
        amount: Decimal,
        quantity: Decimal,
        unit: str,
        priced: bool,
    ) -> None:
        if ref.workspace_id is not None:  # the common case, made directly
            self.lines.append(
                CostLine(
                    day, ref.tenant_id, ref.workspace_id, ref.server_id, ref.server_name,
                    ref.provider, resource, item, currency, amount, quantity, unit, priced,
                )
            )  # fmt: skip
            return
        weights = self.ledger.shares.get(
            (ref.server_id, day, self.cost_split.get(ref.tenant_id, "mailboxes"))
        )
        if not self.by_day:
            key = (ref.server_id, ref.server_name, day.year, day.month, resource, item,
                   currency, unit, priced, tuple(weights) if weights else None)  # fmt: skip
            held = self._pooled.get(key)
            if held is not None:
                day, amount, quantity = held[1], held[5] + amount, held[6] + quantity
            self._pooled[key] = (
                ref, day, resource, item, currency, amount, quantity, unit, priced, weights,
            )  # fmt: skip
            return
        self._split(ref, day, resource, item, currency, amount, quantity, unit, priced, weights)

    def _split(
        self,
        ref: Span | Reading,
        day: date,
        resource: str,
        item: str,
        currency: str,
        amount: Decimal,
        quantity: Decimal,
        unit: str,
        priced: bool,
        weights: Weights | None,
    ) -> None:
        """A shared server's line, one per workspace by ``weights`` (none: idle)."""
        parts = split(amount, quantity, weights)
        append = self.lines.append
        for workspace, share, qty in parts:
            append(
                CostLine(
                    day, ref.tenant_id, workspace, ref.server_id, ref.server_name, ref.provider,
                    resource, item, currency, share, qty, unit, priced,
                )
            )  # fmt: skip

    # spans -------------------------------------------------------------------------------
    def _span_piece(
        self, ref: Span, kind: str, unit: str, lo: datetime, hi: datetime, item: str
    ) -> None:
        """[lo, hi) of a span held at its price(s), one line per day (or month) and price."""
        monthly = not self.by_day and ref.workspace_id is not None
        for a, b, p in self.prices.segments(
            ref.provider, kind, ref.item if kind == "plan" else "", lo, hi
        ):
            currency = p.currency if p else self.prices.currency(ref.provider, kind, "")
            start = day_start(a.date())
            while start < b:
                end = day_start(next_month(start.date())) if monthly else start + DAY
                us = _us(min(b, end) - max(a, start))
                day = max(a, start).date()
                amount = (
                    ZERO if p is None else p.amount * us / (_days_of(day.year, day.month) * DAY_US)
                )
                self._emit(
                    ref,
                    day,
                    ref.resource,
                    item,
                    currency,
                    amount,
                    us / HOUR_US,
                    unit,
                    p is not None,
                )
                start = end

    def spans(self, lo: datetime, hi: datetime) -> None:
        ips: dict[uuid.UUID, list[Span]] = defaultdict(list)
        for span in self.ledger.spans:
            if span.resource == "ip":
                ips[span.server_id].append(span)
                continue
            a = max(lo, span.started_at)
            b = min(hi, span.ended_at or NEVER)
            if a < b:
                self._span_piece(span, "plan", "hour", a, b, span.item)
        for held in ips.values():
            if len(held) > 1:
                for span, a, b in _extra_ips(held):
                    a, b = max(lo, a), min(hi, b)
                    if a < b:
                        self._span_piece(span, "ip", "ip-hour", a, b, span.item)

    # readings ----------------------------------------------------------------------------
    def storage(self, lo: datetime, hi: datetime) -> None:
        """A line per reading; per month (bytes summed, one division) for a workspace's own
        server when not ``by_day``: days of one price and length add up exactly."""
        days: dict[tuple[str, str, date], StorageDay | None] = {}
        months: dict[tuple[object, ...], tuple[Reading, int]] = {}
        for r in self.ledger.readings:
            if r.resource != "backup_storage":
                continue
            key = (r.provider, r.item, r.day)
            if key in days:
                rated = days[key]
            else:
                rated = days[key] = self._storage_day(r, lo, hi)
            if rated is None:
                continue
            if self.by_day or r.workspace_id is None:
                self._storage_line(r, r.quantity, rated)
                continue
            group = (r.server_id, r.workspace_id, r.item, r.day.year, r.day.month, rated)
            first, size = months.get(group, (r, 0))
            months[group] = (first, size + r.quantity)
        for first, size in months.values():
            self._storage_line(first, size, days[(first.provider, first.item, first.day)])

    def _storage_day(self, r: Reading, lo: datetime, hi: datetime) -> StorageDay | None:
        """The day's part of [lo, hi): Σ price × µs, unpriced µs, currency, µs; None: none."""
        start = day_start(r.day)
        a, b = max(lo, start), min(hi, start + DAY)
        if a >= b:
            return None
        total, unpriced, currency = self.prices.integral(r.provider, "backup_storage", r.item, a, b)
        return total, unpriced, currency, _us(b - a)

    def _storage_line(self, r: Reading, size: int, rated: StorageDay | None) -> None:
        """``size`` bytes held over days rated alike (``size``: their bytes summed)."""
        assert rated is not None
        total, unpriced, currency, span = rated
        gb = size / GB
        priced_us = span - unpriced
        if priced_us:
            amount = size * total / (GB * month_days(r.day) * DAY_US)
            quantity = gb if priced_us == DAY_US else gb * priced_us / DAY_US
            self._emit(r, r.day, r.resource, r.item, currency, amount, quantity, "gb-day", True)
        if unpriced:
            self._emit(
                r, r.day, r.resource, r.item, currency, ZERO, gb * unpriced / DAY_US,
                "gb-day", False,
            )  # fmt: skip

    def bandwidth(
        self, first: date, last: date, *, carry: dict[uuid.UUID, int] | None = None
    ) -> None:
        """Overage on the days [first, last] whose month-to-date total passes the plan's
        allowance; the month's earlier readings (or ``carry``) count toward the total."""
        by_server: dict[uuid.UUID, list[Reading]] = defaultdict(list)
        for r in self.ledger.readings:
            if r.resource == "bandwidth" and r.day <= last:
                by_server[r.server_id].append(r)
        plans = self._plans()
        carried = carry or {}
        for server_id, readings in by_server.items():
            floor = self._least_allowance(readings[0].provider, plans.get(server_id, []))
            readings.sort(key=lambda r: r.day)
            following = date.min  # the first day of the month after the one being added up
            total = 0
            for r in readings:
                if r.day >= following:  # in day order: a month begins
                    following = next_month(r.day)
                    total = carried.get(server_id, 0)
                before, total = total, total + r.quantity
                if r.day < first or not r.quantity or (floor is not None and total <= floor):
                    continue  # within every allowance the server's plans have
                self._overage(r, plans.get(server_id, []), before, total)

    def _least_allowance(self, provider: str, plans: list[Span]) -> int | None:
        """The smallest allowance (bytes) of any price of the server's plans; None when one
        is unpriced or unmetered (each day must be looked at)."""
        least: int | None = None
        for span in plans:
            found = periods(self.prices.book, provider, "plan", span.item)
            if not found or any(p.included_gb is None for p in found):
                return None
            low = min(p.included_gb or 0 for p in found) * 1_000_000_000
            least = low if least is None else min(least, low)
        return least

    def _plans(self) -> dict[uuid.UUID, list[Span]]:
        plans: dict[uuid.UUID, list[Span]] = defaultdict(list)
        for span in self.ledger.spans:
            if span.resource == "server":
                plans[span.server_id].append(span)
        return plans

    def _overage(self, r: Reading, plans: list[Span], before: int, total: int) -> None:
        end = day_start(r.day) + DAY
        plan = max(
            (s for s in plans if s.started_at < end), key=lambda s: s.started_at, default=None
        )
        price = None if plan is None else self.prices.plan_at(r.provider, plan.item, end - MICRO)
        if price is None:  # the allowance is unknown: unpriced
            currency = self.prices.currency(r.provider, "bandwidth", "")
            self._emit(r, r.day, "bandwidth", "", currency, ZERO, r.quantity / GB, "gb", False)
            return
        if price.included_gb is None:
            return  # unmetered
        allowance = price.included_gb * 1_000_000_000
        over = max(0, total - allowance) - max(0, before - allowance)
        if over <= 0:
            return
        rate, unpriced, currency = self.prices.integral(
            r.provider, "bandwidth", "", day_start(r.day), end
        )
        gb = over / GB
        self._emit(r, r.day, "bandwidth", "", currency, gb * rate / DAY_US, gb, "gb", unpriced == 0)


def _extra_ips(held: list[Span]) -> list[tuple[Span, datetime, datetime]]:
    """The stretches each address is billed: at any moment all but the server's earliest
    held address (its plan includes one)."""
    cuts = sorted({t for s in held for t in (s.started_at, s.ended_at or NEVER)})
    order = sorted(held, key=lambda s: (s.started_at, s.item))
    out: list[tuple[Span, datetime, datetime]] = []
    for a, b in itertools.pairwise(cuts):
        live = [s for s in order if s.started_at <= a and (s.ended_at or NEVER) >= b]
        out.extend((s, a, b) for s in live[1:])
    return out
