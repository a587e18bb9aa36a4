"""Hours outside a resource's own seasonal baseline: median ± k·MAD per hour of week.

A point is judged against the *other* points at the same hour of the week (the other
Tuesdays 14:00), or of the day while the history is too short for that (every hour of the
week needs ``MIN_PER_SLOT`` points: three weeks; every hour of the day as many, else there
is no baseline yet). Leaving the point out matters with a few
points per slot: with its own value in, a spike pulls the median and the MAD towards itself
(with two points it can never stand out). The centre is the others' median; the spread is
the MAD of the slot's deviations scaled to a standard deviation (× 1.4826), but never less
than the whole series' (the same over every point): a slot of four quiet nights can have a
MAD near zero by chance, which would flag ordinary noise. Deviations under
``MIN_DEVIATION`` percentage points are never anomalies: a flat series (MAD 0) does not
flag its first wobble, and a value equal to its median is never flagged.

Before the slots are formed the series is detrended (Theil–Sen on its daily medians), so a
disk filling steadily does not make every recent hour "above the baseline". Values are in %
of capacity, hourly averages (the same series the forecasts fit).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

from control_plane.usage.trend import theil_sen

# numpy is imported inside the functions that compute: serve and the CLI start without it.
if TYPE_CHECKING:
    import numpy as np

MIN_PER_SLOT = 3
NORMAL_MAD = 1.482602218505602  # 1 / Φ⁻¹(3/4): a normal distribution's σ over its MAD
MIN_DEVIATION = 1.0  # percentage points
DAY = timedelta(days=1)

BaselineKind = Literal["hour_of_week", "hour_of_day", "none"]


@dataclass(frozen=True)
class Anomaly:
    at: datetime
    value: float
    baseline: float  # the slot's median at that time (trend added back)
    allowed: float  # k × spread: how far from the baseline a point may be
    reason: str


def _slot_of_week(at: datetime) -> int:
    return at.weekday() * 24 + at.hour


def _slot_of_day(at: datetime) -> int:
    return at.hour


def _trend_per_day(points: Sequence[tuple[datetime, float]]) -> float:
    """Theil–Sen slope of the daily medians (0 under 3 days: no trend to speak of)."""
    import numpy as np

    first = points[0][0]
    days: dict[int, list[float]] = defaultdict(list)
    for at, value in points:
        days[int((at - first) / DAY)].append(value)
    if len(days) < 3:
        return 0.0
    x = np.array(list(days), dtype=float)
    y = np.array([float(np.median(v)) for v in days.values()])
    return theil_sen(x, y).slope


def find(
    label: str, points: Sequence[tuple[datetime, float]], k: float
) -> tuple[BaselineKind, list[Anomaly]]:
    """The baseline used and the points of ``points`` (hour start, % value; oldest first)
    outside it, each with its reason (``label`` names the series in it)."""
    import numpy as np

    if not points:
        return "none", []
    slope = _trend_per_day(points)
    last = points[-1][0]
    residual = [(at, v - slope * ((at - last) / DAY)) for at, v in points]
    kind: BaselineKind = "hour_of_week"
    slot_of = _slot_of_week
    slots = _group(residual, slot_of)
    if len(slots) < 168 or min(len(v) for v in slots.values()) < MIN_PER_SLOT:
        kind, slot_of = "hour_of_day", _slot_of_day
        slots = _group(residual, slot_of)
        if len(slots) < 24 or min(len(v) for v in slots.values()) < MIN_PER_SLOT:
            return "none", []  # under three days: no baseline for some hours of the day
    # Each point against the *other* points of its slot (leave one out), so a spike cannot
    # pull its own baseline towards itself; the spreads are of these deviations too.
    deviation: dict[int, np.ndarray] = {}
    centre: dict[int, np.ndarray] = {}
    for slot, values in slots.items():
        centre[slot] = _others_medians(np.array(values))
        deviation[slot] = np.array(values) - centre[slot]
    pooled = _scaled_mad(np.concatenate(list(deviation.values())))
    spread = {s: _scaled_mad(d) for s, d in deviation.items()}
    found: list[Anomaly] = []
    seen: dict[int, int] = defaultdict(int)
    for at, value in points:
        slot = slot_of(at)
        index = seen[slot]
        seen[slot] += 1
        allowed = max(k * max(spread[slot], pooled), MIN_DEVIATION)
        if abs(deviation[slot][index]) <= allowed:
            continue
        baseline = float(centre[slot][index]) + slope * ((at - last) / DAY)
        when = f"{at:%a %H:%M}" if kind == "hour_of_week" else f"{at:%H:%M}"
        found.append(
            Anomaly(
                at,
                value,
                baseline,
                allowed,
                f"{label} {value:.1f}% at {at:%a %Y-%m-%d %H:%M} UTC, baseline for "
                f"{when} {baseline:.1f} ± {allowed:.1f}",
            )
        )
    return kind, found


def _group(
    residual: Sequence[tuple[datetime, float]], slot_of: Callable[[datetime], int]
) -> dict[int, list[float]]:
    slots: dict[int, list[float]] = defaultdict(list)
    for at, r in residual:
        slots[slot_of(at)].append(r)
    return dict(slots)


def _others_medians(values: np.ndarray) -> np.ndarray:
    """For each value, the median of all the others (vectorised over the sorted order)."""
    import numpy as np

    n = len(values)
    order = np.argsort(values, kind="stable")
    ranked = values[order]
    rank = np.empty(n, dtype=int)
    rank[order] = np.arange(n)
    m = n - 1  # how many others; their median sits at positions (m-1)//2 and m//2
    low_pos, high_pos = (m - 1) // 2, m // 2
    # Position j among the others is position j (j < rank) or j + 1 in the full ranking.
    low = ranked[np.where(low_pos < rank, low_pos, low_pos + 1)]
    high = ranked[np.where(high_pos < rank, high_pos, high_pos + 1)]
    medians: np.ndarray = (low + high) / 2
    return medians


def _scaled_mad(values: np.ndarray) -> float:
    """The MAD scaled to a standard deviation, as ``scipy.stats.median_abs_deviation(x,
    scale="normal")`` gives it: numpy directly, since scipy's wrapper (axis and NaN
    handling) costs ~2 ms a call and this runs once per slot (168 per resource)."""
    import numpy as np

    return float(NORMAL_MAD * np.median(np.abs(values - np.median(values))))
