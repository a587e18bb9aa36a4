"""benchmarks/dnsbl_sweep.py run tiny (50 addresses × 2 lists), so it never rots between
the runs that measure: every lookup as planted, the fields its readers expect."""

from __future__ import annotations

from pathlib import Path

from tests.benchmarks.test_smoke import run_benchmark


def test_dnsbl_sweep_harness(tmp_path: Path) -> None:
    result = run_benchmark("dnsbl_sweep", tmp_path, "--smoke")
    assert (result["ips"], result["lists"]) == (50, 2)
    assert result["all_as_planted"]
    first, steady = result["cycles"]
    assert first["subjects_checked"] >= 50 and steady["subjects_checked"] >= 50
    assert result["queries_per_second"] > 0 and result["control_plane_cpu_seconds"] > 0
    tally = result["after_first_cycle"]
    assert tally["results"]["listed"] == result["planted_listings"]
    assert tally["auto_paused"] > 0  # the first list is major
