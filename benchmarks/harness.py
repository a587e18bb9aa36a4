"""What every benchmark harness shares: where its JSON result goes, and how two sides are
compared (interleaved rounds, each side's spread, the paired ratio with its interval).

Each harness writes ``benchmarks/results/<name>.json`` by default; ``--out`` sends it
elsewhere, which the smoke runs inside the test suite use so they never overwrite a figure.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

RESULTS = Path(__file__).resolve().parent / "results"
T = TypeVar("T")


def add_out_argument(parser: argparse.ArgumentParser, name: str) -> None:
    """``--out PATH``, defaulting to ``benchmarks/results/<name>.json``."""
    parser.add_argument(
        "--out",
        type=Path,
        default=RESULTS / f"{name}.json",
        help=f"where the JSON result goes (default: benchmarks/results/{name}.json)",
    )


def write_result(path: Path, result: dict[str, Any]) -> None:
    """Write the result as indented JSON (the directory is made if missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")


# -- comparing two sides ------------------------------------------------------------------------
#
# A ratio between two programs on a shared, noisy machine means something only when both ran
# under the same conditions: rounds interleaved (ABAB…, the order flipped each round so neither
# side always goes second), each run from the same cache state, and the spread reported with
# the central figure. Each round's ratio pairs two runs made moments apart, so load that comes
# and goes touches both; the median of those paired ratios, with a distribution-free interval,
# says whether a target like "within 5 %" is resolved or not.


def in_turn(round_: int, first: T, second: T) -> tuple[T, T]:
    """The two sides in this round's order: ``first`` leads in even rounds, ``second`` in odd."""
    return (first, second) if round_ % 2 == 0 else (second, first)


def spread(values: Sequence[float], digits: int = 3) -> dict[str, float]:
    """Median, quartiles (p25, p75: linear interpolation) and the extremes of a sample."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("spread of no values")
    quartiles = (
        statistics.quantiles(ordered, n=4, method="inclusive")
        if len(ordered) > 1
        else [ordered[0]] * 3
    )
    return {
        "median": round(statistics.median(ordered), digits),
        "p25": round(quartiles[0], digits),
        "p75": round(quartiles[2], digits),
        "min": round(ordered[0], digits),
        "max": round(ordered[-1], digits),
    }


def median_interval(
    values: Sequence[float], confidence: float = 0.95
) -> tuple[float, float] | None:
    """A distribution-free interval for the median: the order statistics (k, n+1−k) with the
    largest k whose binomial coverage is still at least ``confidence`` (10 values: the 2nd and
    9th, 97.9 %). None when there are too few values to reach it (fewer than 6 at 95 %)."""
    ordered, n = sorted(values), len(values)
    best = None
    for k in range(1, n // 2 + 1):
        below = sum(math.comb(n, i) for i in range(k)) / 2**n  # P(Binomial(n, ½) ≤ k−1)
        if 1 - 2 * below < confidence:
            break
        best = (ordered[k - 1], ordered[n - k])
    return best


def compare(
    names: tuple[str, str],
    a: Sequence[float],
    b: Sequence[float],
    target: float | None = None,
    digits: int = 3,
) -> dict[str, Any]:
    """Per side (keyed by ``names``) its runs in round order and their spread, and the ratio
    a/b of each round's pair: its spread and a 95 % interval for its median. With a
    ``target`` (a/b at most this), ``verdict`` is "met" when the whole interval is at or
    under it, "missed" when all of it is above, otherwise "unresolved" (also when the rounds
    are too few for an interval)."""
    if len(a) != len(b) or not a:
        raise ValueError("compare needs the same number (> 0) of runs on each side")
    ratios = [x / y for x, y in zip(a, b, strict=True)]
    interval = median_interval(ratios)
    ratio: dict[str, Any] = {
        **spread(ratios, digits),
        "ci95": [round(interval[0], digits), round(interval[1], digits)] if interval else None,
    }
    result: dict[str, Any] = {
        name: {"runs": [round(v, digits) for v in side], **spread(side, digits)}
        for name, side in zip(names, (a, b), strict=True)
    }
    result["ratio"] = ratio
    if target is not None:
        ratio["target"] = target
        if interval is None:
            ratio["verdict"] = "unresolved"
        elif interval[1] <= target:
            ratio["verdict"] = "met"
        elif interval[0] > target:
            ratio["verdict"] = "missed"
        else:
            ratio["verdict"] = "unresolved"
    return result


def drop_page_cache() -> bool:
    """Write back and drop the kernel's page cache so a run reads from disk like the first
    after a while; False when this process may not (not root, or a container's read-only
    /proc), and the caller must even out the cache another way."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True
