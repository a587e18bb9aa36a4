"""The benchmarks' shared comparison: interleaving, spread, the paired ratio's interval and
the verdict it allows against a target."""

from __future__ import annotations

import pytest

from benchmarks.harness import compare, in_turn, median_interval, spread


def test_in_turn_alternates_the_lead() -> None:
    assert [in_turn(r, "a", "b") for r in range(4)] == [("a", "b"), ("b", "a")] * 2


def test_spread_of_a_sample() -> None:
    assert spread([5.0, 1.0, 3.0, 2.0, 4.0]) == {
        "median": 3.0, "p25": 2.0, "p75": 4.0, "min": 1.0, "max": 5.0,
    }  # fmt: skip


def test_median_interval_uses_order_statistics() -> None:
    values = [float(v) for v in range(10, 0, -1)]
    assert median_interval(values) == (2.0, 9.0)  # 97.9 % for 10 values
    assert median_interval(values[:6]) == (5.0, 10.0)  # the extremes: 96.9 %
    assert median_interval(values[:5]) is None  # 93.8 % at best


@pytest.mark.parametrize(
    ("a", "verdict"),
    [
        ([1.00, 1.01, 1.02, 1.00, 1.03, 1.01, 1.02, 1.00, 1.01, 1.02], "met"),
        ([1.20, 1.21, 1.25, 1.19, 1.22, 1.20, 1.23, 1.21, 1.18, 1.24], "missed"),
        ([0.64, 1.21, 0.78, 1.00, 1.10, 0.95, 1.30, 0.90, 1.05, 1.02], "unresolved"),
    ],
)
def test_compare_pairs_each_round(a: list[float], verdict: str) -> None:
    b = [2.0 * x for x in range(1, 11)]  # each round's pair shares the round's conditions
    result = compare(("ours_s", "raw_s"), [x * y for x, y in zip(a, b, strict=True)], b, 1.05)
    assert result["raw_s"]["runs"] == b
    assert result["ratio"]["verdict"] == verdict
    low, high = result["ratio"]["ci95"]
    assert sorted(a)[1] == pytest.approx(low) and sorted(a)[8] == pytest.approx(high)


def test_compare_refuses_unpaired_runs() -> None:
    with pytest.raises(ValueError, match="same number"):
        compare(("a", "b"), [1.0, 2.0], [1.0])
