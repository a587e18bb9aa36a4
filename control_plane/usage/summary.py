"""One series' summary: average, p95, max, peak hour of day and day of week, trend per day.

numpy for the percentile; the trend is Theil–Sen's (``usage.trend``, as capacity fits it),
which ignores a few spikes (a backup's disk burst) that would tilt a least-squares line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from control_plane.usage.series import US, Series
from control_plane.usage.trend import theil_sen

# numpy is imported inside the functions that compute: serve and the CLI start without it.
if TYPE_CHECKING:
    import numpy as np

# Theil–Sen is quadratic in points: longer series are averaged down to this many first
# (90 days of hours → daily means; under a millisecond a series).
TREND_POINTS = 96
DAY = 86_400.0


@dataclass(frozen=True, slots=True)
class Summary:
    """None everywhere: no data (unknown), never zero."""

    average: float | None = None
    p95: float | None = None
    max: float | None = None
    peak_hour: int | None = None
    peak_weekday: int | None = None
    trend_per_day: float | None = None


def summarize(points: Series, step_seconds: int | None) -> Summary:
    """Summary of ``points`` (a step's buckets; ``step_seconds`` None for raw samples).

    ``average`` weighs each bucket by its sample count; ``p95`` is over bucket averages; peak
    hour (0–23, UTC) and weekday (0 = Monday) are those with the highest mean bucket average —
    hour only when buckets are no longer than an hour, weekday only when no longer than a day.
    ``trend_per_day`` (units per day) needs points spanning at least a day.
    """
    import numpy as np

    if not len(points):
        return Summary()
    avgs, counts, times = points.avg, points.count.astype(float), points.t / US
    return Summary(
        average=float(np.dot(avgs, counts) / counts.sum()),
        p95=float(np.percentile(avgs, 95)),
        max=float(points.max.max()),
        peak_hour=_peak(times, avgs, 3600, 24, 0)
        if step_seconds is None or step_seconds <= 3600
        else None,
        # 1970-01-01 was a Thursday (weekday 3).
        peak_weekday=_peak(times, avgs, 86_400, 7, 3)
        if step_seconds is None or step_seconds <= 86_400
        else None,
        trend_per_day=_trend(times, avgs),
    )


def _peak(times: np.ndarray, avgs: np.ndarray, unit: int, period: int, offset: int) -> int:
    import numpy as np

    slot = ((times // unit).astype(np.int64) + offset) % period
    sums = np.bincount(slot, weights=avgs, minlength=period)
    seen = np.bincount(slot, minlength=period)
    means = np.where(seen > 0, sums / np.maximum(seen, 1), -np.inf)
    return int(np.argmax(means))


def _trend(times: np.ndarray, avgs: np.ndarray) -> float | None:
    import numpy as np

    if len(times) < 3 or times[-1] - times[0] < DAY:
        return None
    if len(times) > TREND_POINTS:
        bins = np.arange(len(times)) * TREND_POINTS // len(times)
        sizes = np.bincount(bins)
        times = np.bincount(bins, times) / sizes
        avgs = np.bincount(bins, avgs) / sizes
    return theil_sen((times - times[0]) / DAY, avgs).slope
