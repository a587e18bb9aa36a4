"""Each benchmark harness, run tiny, so none of them rots between the runs that measure.

The figures themselves come from full runs (README, issue notes); here each harness must
finish and write a result with the fields its readers expect, to a file of the test's own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from control_plane.web.pages import server_sections
from tests.support.haproxy import haproxy_binary
from tests.support.netns import netns_unavailable

ROOT = Path(__file__).resolve().parents[2]


def run_benchmark(name: str, tmp_path: Path, *args: str, timeout: float = 240) -> dict[str, Any]:
    out = tmp_path / f"{name}.json"
    finished = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), *args, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    result: dict[str, Any] = json.loads(out.read_text())
    assert result["benchmark"] == name
    return result


def needs_netns() -> None:
    reason = netns_unavailable()
    if reason is not None:
        pytest.skip(reason)


def test_backup_harness(tmp_path: Path) -> None:
    """Two interleaved rounds (warm: dropping the page cache would slow everyone's tests):
    per phase each side's runs and spread, and the paired ratio; two rounds are too few for
    an interval, so the verdict against the target cannot be "met"."""
    args = ("--gigabytes", "0.005", "--rounds", "2", "--cache", "warm")
    result = run_benchmark("backup", tmp_path, *args)
    assert result["messages"] > 0 and result["rounds"] == 2
    assert result["cache_state"].startswith("warm")
    for phase in ("initial", "incremental", "restore"):
        figures = result[phase]
        for side in ("mailfleet_s", "raw_s"):
            runs = figures[side]["runs"]
            assert len(runs) == 2 and all(r > 0 for r in runs)
            assert figures[side]["min"] <= figures[side]["median"] <= figures[side]["max"]
        ratio = figures["ratio"]
        mailfleet, raw = figures["mailfleet_s"]["runs"], figures["raw_s"]["runs"]
        paired = sorted(m / r for m, r in zip(mailfleet, raw, strict=True))
        assert ratio["min"] == pytest.approx(paired[0], rel=0.01)
        assert ratio["max"] == pytest.approx(paired[-1], rel=0.01)
        assert ratio["ci95"] is None and ratio["verdict"] == "unresolved"
        if phase != "restore":  # the command's own restic backup, within its wall time
            part = figures["mailfleet_s"]["restic_backup_part"]
            assert part["min"] > 0 and part["max"] <= figures["mailfleet_s"]["max"]
    # Each round's repository is new: its initial backup is the day's first and measures it.
    assert result["initial"]["mailfleet_s"]["rounds_measuring_size"] == 2
    assert result["incremental"]["mailfleet_s"]["rounds_measuring_size"] == 0
    assert result["restore_mib_per_s"] > 0


def test_dns_check_harness(tmp_path: Path) -> None:
    result = run_benchmark("dns_check", tmp_path, "--domains", "5", "--runs", "1", "--sweep", "4")
    assert result["domains"] == 5
    assert result["median_wall_seconds"] > 0
    assert result["median_queries_per_second"] > 0


def test_health_sweep_harness(tmp_path: Path) -> None:
    args = ("--servers", "20", "--runs", "1", "--silent-share", "0.05", "--timeout", "1")
    result = run_benchmark(
        "health_sweep", tmp_path, *args, "--latency-runs", "0", "--no-full-sweep"
    )
    assert result["all_ok"]
    assert result["prober_cpu_ms_per_server"] > 0
    assert result["projected_share_of_one_core"]["share"] > 0
    degraded = result["degraded_sweep"]
    assert degraded["results"]["smtp.25:unknown"] == degraded["silent_servers"] == 1
    assert degraded["results"]["smtp.25:failing"] == degraded["refused_servers"] == 1


def test_health_sweep_full_cycle(tmp_path: Path) -> None:
    """The real Sweep and Checker over server rows in PostgreSQL: each server checked once a
    cycle, its probes and resources ok, ``mailu.status`` queued, the projection filled in."""
    args = ("--servers", "3", "--runs", "2", "--silent-share", "0", "--refused-share", "0")
    result = run_benchmark("health_sweep", tmp_path, *args, "--latency-runs", "0")
    full = result["full_sweep"]
    assert full["all_checked_once"] and [c["checked"] for c in full["cycles"]] == [3, 3, 3]
    for cycle in full["cycles"]:
        checks = cycle["checks"]
        for check in ("smtp.25", "smtp.465", "smtp.587", "imap.993", "tls.expiry"):
            assert checks[f"{check}:ok"] == 3, checks
        assert checks["agent.link:ok"] == checks["memory:ok"] == checks["disk./:ok"] == 3
        assert checks["backup.none:failing"] == 3  # MailU without backups: confirmed at once
        assert cycle["mailu_status_queued"] == 3  # the last cycle's were answered
        assert cycle["incidents"] == 3
    assert full["control_plane_cpu_ms_per_server"] > 0
    assert full["projected_share_of_one_core"]["control_plane"] > 0


def test_health_sweep_notification_latency(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the latency run binds the standard mail ports (root)")
    args = (
        "--servers",
        "2",
        "--runs",
        "1",
        "--latency-runs",
        "1",
        "--fast-timers",
        "--no-full-sweep",
    )
    result = run_benchmark("health_sweep", tmp_path, *args)
    latency = result["failure_to_first_notification"]
    assert 0 < latency["median_detection_to_trigger_seconds"] < 600


def test_agent_footprint_harness(tmp_path: Path) -> None:
    args = ("--seconds", "2", "--settle", "0", "--burst", "6")
    result = run_benchmark("agent_footprint", tmp_path, *args)
    for phase in ("idle", "burst"):  # USS (only the agent's pages) is part of its RSS
        assert 10 < result[phase]["uss_mb"]["max"] < result[phase]["rss_mb"]["max"]
        assert result[phase]["samples"] > 0 and result[phase]["cpu_percent_of_one_core"] >= 0
        assert 0 < result[phase]["pss_mb"]["max"] <= result[phase]["rss_mb"]["max"]
    where = result["idle"]["resident_mb_by_mapping"]  # the largest mappings, part of RSS
    assert where and sum(where.values()) <= result["idle"]["rss_mb"]["max"] + 1
    assert result["burst"]["states"] == {"succeeded": 6}


def test_agent_fleet_harness(tmp_path: Path) -> None:
    """Two replicas behind HAProxy where haproxy is installed (the path with more parts:
    the single replica is the same run without them)."""
    replicas = 2 if haproxy_binary() is not None else 1
    args = ("--sizes", "4", "--idle", "2", "--window", "2", "--commands", "6")
    args += ("--metrics-seconds", "1")  # a batch a second, so a few seconds hold some
    result = run_benchmark("agent_fleet", tmp_path, *args, "--replicas", str(replicas))
    assert result["replicas"] == replicas
    (step,) = result["steps"]
    assert step["connected"] == 4 and step["enroll_failures"] == 0
    assert step["commands"] == 6 and step["command_failures"] == 0
    assert step["ping_states"] == {"succeeded": 6} and step["deliveries"] == 6  # each once
    assert step["plane_side"]["dispatch_mean_ms"] >= 0
    assert step["plane_side"]["agent_round_trip_mean_ms"] > 0
    assert isinstance(step["plane_side"]["slowest_periodic_jobs"], dict)
    assert step["servers_commanded"] == 4  # the whole fleet, each once before any twice
    assert 0 < step["command_round_trip_ms"]["p50"] <= step["command_round_trip_ms"]["p99"]
    for window in ("idle", "commands"):  # 4 agents: per 1,000 is 250 times the cores used
        cpu = step["control_plane_cpu"][window]
        assert cpu["cores"] >= 0, window
        assert cpu["per_1000_agents"] == pytest.approx(250 * cpu["cores"], abs=0.2), window
        assert cpu["waiting_for_the_core"] >= 0, window
    assert step["control_plane_cpu"]["commands"]["cores"] > 0
    samples = step["samples"]  # ~4 agents x ~6 s at one a second; the newest may be in flight
    assert samples["expected"] >= 12 and samples["expected"] / 2 <= samples["stored"], samples
    if (os.cpu_count() or 1) >= 2:
        assert result["pinned"] == {"control_plane": 0, "simulator": 1}


def test_provision_harness(tmp_path: Path) -> None:
    needs_netns()
    result = run_benchmark("provision", tmp_path, "--runs", "1", "--limit", "120")
    assert result["median_to_ready_seconds"] > 0
    assert result["median_deprovision_seconds"] > 0


def test_recover_harness(tmp_path: Path) -> None:
    needs_netns()
    result = run_benchmark("recover", tmp_path, "--gigabytes", "0.002", "--limit", "180")
    assert result["restored_messages"] == result["messages"] > 0
    assert result["rto_seconds"] > 0


# first_run's smoke run is tests/e2e/test_readme.py: the same walk, whose second start it
# times with the harness's own one_start (a run of its own here cost a whole walk more).


def test_usage_query_harness(tmp_path: Path) -> None:
    result = run_benchmark("usage_query", tmp_path, "--smoke")
    assert [s["hourly_servers"] for s in result["sizes"]] == [2, 4]
    for size in result["sizes"]:
        assert size["hourly_rows"] == size["hourly_servers"] * 3 * 730 * 24
        assert abs(size["points"] - 3 * 90 * 24) <= 3  # an hour may turn during the run
        assert 0 < size["read_series_ms"]["p50"] <= size["read_series_ms"]["p99"]
        assert size["usage_route_ms"]["p50"] > 0


def test_costs_harness(tmp_path: Path) -> None:
    result = run_benchmark("costs", tmp_path, "--smoke")
    assert (result["servers"], result["workspaces"]) == (10, 4)
    assert result["spans"] >= 20 and result["readings"] > 10 * 30
    assert 0 < result["report_seconds"]["p50"] <= result["report_seconds"]["p99"]
    assert float(result["projected"]) >= float(result["month_to_date"]) > 0


def test_console_harness(tmp_path: Path) -> None:
    result = run_benchmark("console", tmp_path, "--smoke")
    assert result["servers"] == 20
    for page in ("fleet", "fleet_admin_all_tenants", "server"):
        assert 0 < result[page]["p50"] <= result[page]["p95"], page
        assert result[page]["bytes"] > 1000, page  # a page, not an error body
    assert result["samples_per_charted_server"] == 24 * 60
    assert set(result["server_sections"]) == {s.slug for s in server_sections()}
    assert "/ui/costs" in result["other_pages"] and "/ui/usage" in result["other_pages"]
