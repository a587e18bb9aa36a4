"""When a resource will cross its thresholds: a robust linear fit of its daily peaks.

What is fitted. Hourly averages swing with the day (mail arrives by day, backups run at
night), and capacity runs out when the *busy hour* runs out, not the average one: a trend of
hourly averages reaches 90 % days after the afternoons do. So each 24-hour period (counted
back from now, so the newest is complete rather than a calendar day's morning) gives one
figure, the 95th percentile of its hourly averages: the busy hour, but not one freak hour
(a single spike hour is the maximum of 24 and barely moves the p95; the daily *maximum*
would follow it). Hourly averages rather than hourly maxima because a CPU at 100 % for one
sample is not a CPU out of capacity. Disk and inode use barely cycle; for them this is the
day's level.

How. Theil–Sen (``usage.trend``, the interval scipy's): the median of the pairwise slopes,
so a few odd days (a cleanup, an outage) do not tilt the line as least squares would, and its
confidence interval for the slope gives the band: the earliest crossing from the upper
slope, the latest from the lower one (none when the lower slope is not rising: it may never
cross). Lines pivot at the data's centre (median x, median y), as scipy's intercept does,
so the band widens the further ahead it looks.

Why not statsmodels: its seasonal models (ETS, SARIMA, STL) would forecast the daily cycle
itself, which the daily peaks already take out, and it adds a large dependency for that;
the band from Theil–Sen's slope interval needs no distribution assumption on the noise
(capacity series are anything but normal).

Answers: a crossing day with its band; "above" (the last 24 h's peak already is at or
above the level: health's "now" checks own that); "not rising" (slope ≤ 0); "beyond the
horizon" (more than a year out: a 30-day trend says nothing that far); or unknown with a
reason (no data for a day, fewer than ``min_days`` usable days, more gaps than days).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

from control_plane.usage.trend import theil_sen

if TYPE_CHECKING:
    pass

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
MIN_HOURS_PER_DAY = 12  # a day with fewer hourly figures has no trustworthy busy hour
HORIZON_DAYS = 365.0
PEAK_PERCENTILE = 95.0
CONFIDENCE = 0.95

CrossingStatus = Literal["above", "forecast", "not_rising", "beyond_horizon"]


@dataclass(frozen=True)
class Crossing:
    """When the fitted daily peak reaches ``level`` % (``at``), and the band around it."""

    level: float
    status: CrossingStatus
    at: datetime | None = None
    earliest: datetime | None = None
    latest: datetime | None = None  # None with a forecast: the band's low slope never gets there


@dataclass(frozen=True)
class Forecast:
    """One resource's answer. ``reason`` says why when ``known`` is False."""

    known: bool
    reason: str
    current: float | None = None  # the newest hourly average, %
    peak: float | None = None  # the last 24 h's busy hour (p95 of hourly averages), %
    slope_per_day: float | None = None  # percentage points per day
    slope_low: float | None = None
    slope_high: float | None = None
    days: int = 0  # daily peaks fitted
    crossings: tuple[Crossing, ...] = ()
    fitted: float | None = None  # the fitted line at the data's end (the hour after now's)


def floor_hour(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


def daily_peaks(points: Sequence[tuple[datetime, float]], end: datetime) -> dict[int, float]:
    """Days back from ``end`` (0: the 24 h before it) → p95 of that day's hourly averages,
    for days with at least ``MIN_HOURS_PER_DAY`` of them."""
    import numpy as np

    days: dict[int, list[float]] = defaultdict(list)
    for at, value in points:
        if at < end:
            days[int((end - at) / DAY)].append(value)
    return {
        day: float(np.percentile(values, PEAK_PERCENTILE))
        for day, values in days.items()
        if len(values) >= MIN_HOURS_PER_DAY
    }


def forecast(
    points: Sequence[tuple[datetime, float]],
    now: datetime,
    levels: Sequence[float],
    *,
    min_days: int = 3,
    confidence: float = CONFIDENCE,
) -> Forecast:
    """Fit ``points`` (hourly buckets' start and average, in % of capacity, oldest first)
    and say when each level is crossed. ``now`` ends the data: hours after it are ignored."""
    import numpy as np

    end = floor_hour(now) + HOUR
    points = [(at, value) for at, value in points if at < end]
    if not points:
        return Forecast(False, "no hourly data in the window")
    newest_at, current = points[-1]
    if now - newest_at > DAY:
        return Forecast(False, f"no data since {newest_at:%Y-%m-%d %H:%M} UTC", current=current)
    peaks = daily_peaks(points, end)
    spanned = max(int((end - points[0][0]) / DAY) + 1, 1)
    if len(peaks) < min_days:
        return Forecast(
            False,
            f"{len(peaks)} day(s) with {MIN_HOURS_PER_DAY}+ hours of data; a forecast "
            f"needs {min_days}",
            current=current,
            peak=peaks.get(0),
            days=len(peaks),
        )
    if 0 not in peaks or len(peaks) * 2 < spanned:
        return Forecast(
            False,
            f"too many gaps: {len(peaks)} of the last {spanned} days have "
            f"{MIN_HOURS_PER_DAY}+ hours of data"
            + ("" if 0 in peaks else ", the last 24 hours not among them"),
            current=current,
            peak=peaks.get(0),
            days=len(peaks),
        )
    x = np.array([-(day + 0.5) for day in peaks])  # days relative to ``end``
    y = np.array(list(peaks.values()))
    fit = theil_sen(x, y, confidence)
    slope = fit.slope
    low = slope if fit.low is None else fit.low  # (always given: a confidence was asked for)
    high = slope if fit.high is None else fit.high
    pivot_x, pivot_y = float(np.median(x)), float(np.median(y))
    peak = peaks[0]
    crossings = tuple(
        _crossing(level, peak, pivot_x, pivot_y, slope, low, high, end) for level in levels
    )
    return Forecast(
        True,
        f"Theil–Sen fit of {len(peaks)} daily peaks",
        current=current,
        peak=peak,
        slope_per_day=slope,
        slope_low=low,
        slope_high=high,
        days=len(peaks),
        crossings=crossings,
        fitted=pivot_y - slope * pivot_x,  # x is in days from the end
    )


def _crossing(
    level: float, peak: float, pivot_x: float, pivot_y: float,
    slope: float, low: float, high: float, end: datetime,
) -> Crossing:  # fmt: skip
    if peak >= level:
        return Crossing(level, "above")

    def when(s: float) -> datetime | None:
        """Where the line of slope ``s`` through the pivot reaches ``level`` (not before
        ``end``: the newest peak is under it), None when it never does within the horizon."""
        if s <= 0:
            return None
        days = max(pivot_x + (level - pivot_y) / s, 0.0)
        return end + timedelta(days=days) if days <= HORIZON_DAYS else None

    bounds = [t for t in (when(high), when(low)) if t is not None]
    earliest = min(bounds) if bounds else None
    latest = max(bounds) if len(bounds) == 2 else None
    if slope <= 0:
        return Crossing(level, "not_rising", earliest=earliest)
    at = when(slope)
    if at is None:
        return Crossing(level, "beyond_horizon", earliest=earliest)
    return Crossing(level, "forecast", at, min(earliest or at, at), latest and max(latest, at))
