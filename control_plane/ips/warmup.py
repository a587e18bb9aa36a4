"""Warmup plans: how many messages a fresh address may send on each day of its warmup.

Receivers judge a new address by its volume curve: a steady geometric ramp (each day a fixed
factor more than the day before) builds a history before the volume a mailbox provider
would flag from a stranger. The named plans differ in their first day, length and end:

- ``conservative``: 63 days (9 weeks), 20/day → 50,000/day (×1.14 a day)
- ``standard``:     42 days (6 weeks),  50/day → 50,000/day (×1.18 a day)
- ``aggressive``:   25 days (~3.5 weeks), 100/day → 50,000/day (×1.30 a day)
- ``custom``:       the caller's list of daily caps (day 1 first)

After the last day the plan is done: no cap (``None``). Caps are rounded to two significant
figures so they read like a schedule a person wrote (50, 59, 70, … 42,000, 50,000).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

from control_plane.errors import InvalidInput

if TYPE_CHECKING:
    from control_plane.ips.models import IpAddress

MAX_CUSTOM_DAYS = 366
MAX_CAP = 10_000_000


@dataclass(frozen=True)
class Plan:
    name: str
    days: int
    first: int
    last: int

    def caps(self) -> tuple[int, ...]:
        factor = (self.last / self.first) ** (1 / (self.days - 1))
        return tuple(_round2(self.first * factor**day) for day in range(self.days))


PLANS = {
    plan.name: plan
    for plan in (
        Plan("conservative", 63, 20, 50_000),
        Plan("standard", 42, 50, 50_000),
        Plan("aggressive", 25, 100, 50_000),
    )
}
PLAN_NAMES = (*PLANS, "custom")


def _round2(value: float) -> int:
    """Two significant figures (50, 59, 1200, 42000): a schedule, not a float."""
    if value < 100:
        return max(1, round(value))
    scale = 10 ** (int(math.log10(value)) - 1)
    return int(round(value / scale) * scale)


def parse_custom(caps: object, field: str = "body.caps") -> tuple[int, ...]:
    """A custom plan's daily caps: 1..366 whole numbers ≥ 0 (0 = hold that day)."""
    if not isinstance(caps, list | tuple) or not caps:
        raise InvalidInput("a custom plan needs a non-empty list of daily caps", field=field)
    if len(caps) > MAX_CUSTOM_DAYS:
        raise InvalidInput(f"a custom plan has at most {MAX_CUSTOM_DAYS} days", field=field)
    for index, cap in enumerate(caps):
        if isinstance(cap, bool) or not isinstance(cap, int) or not 0 <= cap <= MAX_CAP:
            raise InvalidInput(
                f"day {index + 1}: a cap is a whole number from 0 to {MAX_CAP}",
                field=f"{field}.{index}",
            )
    return tuple(int(c) for c in caps)


def schedule(plan: str, custom: str | None) -> tuple[int, ...]:
    """The daily caps of ``plan`` (a custom plan's are stored as a JSON list)."""
    if plan == "custom":
        try:
            return tuple(int(c) for c in json.loads(custom or "[]"))
        except (ValueError, TypeError):
            return ()
    found = PLANS.get(plan)
    return found.caps() if found is not None else ()


def plan_day(ip: IpAddress, day: date) -> int | None:
    """Day number of the plan on ``day`` (0 = its first day; None: no plan running)."""
    if ip.warmup_plan is None or ip.warmup_start is None or ip.warmup_done_at is not None:
        return None
    return max(0, (day - ip.warmup_start).days)


def plan_cap(ip: IpAddress, day: date) -> int | None:
    """The plan's cap on ``day``, without the one-day override (None: no plan, or done).

    Before the plan's first day the first day's cap holds: an address with a plan starting
    tomorrow is still cold today.
    """
    index = plan_day(ip, day)
    if index is None or ip.warmup_plan is None:
        return None
    caps = schedule(ip.warmup_plan, ip.warmup_caps)
    return caps[index] if index < len(caps) else None


def finished(ip: IpAddress, day: date) -> bool:
    """The plan has run past its last day by ``day``."""
    index = plan_day(ip, day)
    if index is None or ip.warmup_plan is None:
        return False
    return index >= len(schedule(ip.warmup_plan, ip.warmup_caps))


def today_cap(ip: IpAddress, day: date) -> int | None:
    """What ``ip`` may send on ``day``: the one-day override if set for that day, else the
    plan's cap (None = no cap: warmup done or none)."""
    if ip.warmup_today_cap is not None and ip.warmup_today_cap_day == day:
        return ip.warmup_today_cap
    return plan_cap(ip, day)
