"""Theil–Sen's line: the median of the pairwise slopes, so a few odd points (a backup's disk
burst, a cleanup) do not tilt it as they would a least-squares line. One fit serves the
usage summary's trend and capacity's forecasts and anomaly detrending.

The slope alone is computed here in numpy (the median of the pairwise slopes, as
``scipy.stats.theilslopes`` computes it): scipy's call costs ~0.6–0.8 ms against 0.1–0.25 ms
for 30–96 points, mostly for the confidence interval, and a usage answer fits ~25 series.
A confidence interval (Sen 1968) is scipy's, not derived again here.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

# numpy is imported inside the functions that compute: serve and the CLI start without it.
if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True, slots=True)
class TheilSen:
    """The slope; with a confidence asked for, its interval (``low`` ≤ slope ≤ ``high``)."""

    slope: float
    low: float | None = None
    high: float | None = None


def theil_sen(x: np.ndarray, y: np.ndarray, confidence: float | None = None) -> TheilSen:
    """Theil–Sen slope of ``y`` over ``x`` (pairs with equal x are left out), with its
    ``confidence`` interval when one is given (``len(x)`` ≥ 2 with distinct x values)."""
    import numpy as np

    if confidence is not None:
        # scipy.stats takes ~1.5 s to import: loaded by the first forecast, not at every
        # serve and CLI start.
        from scipy.stats import theilslopes

        fit = theilslopes(y, x, alpha=confidence)
        return TheilSen(float(fit.slope), float(fit.low_slope), float(fit.high_slope))
    i, j = _pairs(len(x))
    dx = x[j] - x[i]
    keep = dx != 0
    return TheilSen(float(np.median((y[j] - y[i])[keep] / dx[keep])))


@lru_cache(maxsize=128)
def _pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i < j) of n points: the same few sizes recur (96 per usage summary)."""
    import numpy as np

    i, j = np.triu_indices(n, k=1)
    i.flags.writeable = j.flags.writeable = False
    return i, j
