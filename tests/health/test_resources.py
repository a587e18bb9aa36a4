"""Resource checks from stored samples, written at known times, on both databases."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from control_plane.db.engine import Database
from control_plane.health.resources import resource_results
from control_plane.health.results import Result
from control_plane.metrics.ingest import store_samples
from control_plane.servers.models import Server
from control_plane.settings import Settings
from tests.support import rows

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
GiB = 2**30


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path)  # sustain 600 s, gap 60 s, levels 80/90/95


async def a_server(db: Database) -> Server:
    return await rows.a_server_row(db, await rows.a_tenant(db, "r"), name="r")


def fs(mount: str, used_pct: float, inodes_pct: float | None = None) -> dict[str, Any]:
    total = 100 * GiB
    used = int(total * used_pct / 100)
    inodes = 0 if inodes_pct is None else 1_000_000
    return {
        "mountpoint": mount,
        "device": f"/dev/{mount.strip('/') or 'root'}",
        "fstype": "ext4" if inodes else "btrfs",
        "total_bytes": total,
        "used_bytes": used,
        "free_bytes": total - used,
        "inodes_total": inodes,
        "inodes_used": int(inodes * (inodes_pct or 0) / 100),
    }


def sample(
    server: Server,
    at: datetime,
    *,
    cpu: float = 10.0,
    memory: float = 20.0,
    filesystems: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    total = 8 * GiB
    available = int(total * (100 - memory) / 100)
    return {
        "server_id": server.id,
        "tenant_id": server.tenant_id,
        "sampled_at": at,
        "batch_sequence": 1,
        "cpu_percent": cpu,
        "load1": 0.0,
        "load5": 0.0,
        "load15": 0.0,
        "memory_total_bytes": total,
        # "used" deliberately disagrees: page cache is neither used nor available
        "memory_used_bytes": total // 10,
        "memory_available_bytes": available,
        "swap_total_bytes": 0,
        "swap_used_bytes": 0,
        "disk_read_bytes": 0,
        "disk_write_bytes": 0,
        "net_rx_bytes": 0,
        "net_tx_bytes": 0,
        "process_count": 50,
        "filesystems": json.dumps(filesystems if filesystems is not None else [fs("/", 30, 5)]),
    }


def every(step: float, start: datetime, end: datetime) -> list[datetime]:
    """Sample times from ``start`` to ``end`` inclusive, ``step`` seconds apart."""
    times, at = [], start
    while at <= end:
        times.append(at)
        at += timedelta(seconds=step)
    return times


async def write(db: Database, rows: list[dict[str, Any]]) -> None:
    async with db.session() as session:
        await store_samples(session, rows)


async def results(db: Database, server: Server, settings: Settings) -> dict[str, Result]:
    async with db.session() as session:
        found = await resource_results(session, server, settings, NOW)
    assert len({r.check for r in found}) == len(found)
    return {r.check: r for r in found}


def window(step: float = 15.0) -> list[datetime]:
    """Ten minutes and a bit of samples, 15 s apart, ending just before NOW."""
    return every(step, NOW - timedelta(seconds=610), NOW - timedelta(seconds=1))


async def test_each_level_needs_every_sample_of_the_window(
    db: Database, settings: Settings
) -> None:
    server = await a_server(db)
    times = window()
    cpu = [96.0] * len(times)
    cpu[5] = 91.0  # one sample below 95 %: critical is not sustained, warning is
    memory = [85.0 + (i % 3) for i in range(len(times))]  # 85-87 %: info
    await write(
        db, [sample(server, t, cpu=c, memory=m) for t, c, m in zip(times, cpu, memory, strict=True)]
    )

    found = await results(db, server, settings)

    assert found["cpu"].state == "failing"
    assert (found["cpu"].severity, found["cpu"].threshold, found["cpu"].observed) == (
        "warning",
        "90%",
        "91.0%",
    )
    assert found["memory"].state == "failing"
    assert (found["memory"].severity, found["memory"].threshold) == ("info", "80%")
    assert found["memory"].observed == "85.0%"  # 1 - available/total, not used/total (10 %)
    assert found["disk./"].state == "ok"
    assert found["inodes./"].state == "ok"


async def test_critical_when_sustained_and_ok_after_a_spike(
    db: Database, settings: Settings
) -> None:
    server = await a_server(db)
    times = window()
    half = len(times) // 2
    await write(
        db,
        [
            sample(server, t, cpu=99.0 if i >= half else 40.0, memory=97.0)
            for i, t in enumerate(times)
        ],
    )

    found = await results(db, server, settings)

    assert (found["memory"].state, found["memory"].severity) == ("failing", "critical")
    assert found["memory"].threshold == "95%"
    assert found["cpu"].state == "ok"  # five minutes at 99 % is a spike, not sustained
    assert found["cpu"].observed == "40.0%"
    assert "99.0%" in found["cpu"].detail  # the latest value is still told


async def test_disks_and_inodes_are_judged_per_filesystem(db: Database, settings: Settings) -> None:
    server = await a_server(db)
    disks = [fs("/", 96.5, 10), fs("/data", 20, 92), fs("/srv", 85)]  # /srv: btrfs, no inodes
    await write(db, [sample(server, t, filesystems=disks) for t in window()])

    found = await results(db, server, settings)

    assert set(found) == {"memory", "cpu", "disk./", "inodes./", "disk./data", "inodes./data",
                          "disk./srv"}  # fmt: skip
    assert (found["disk./"].state, found["disk./"].severity) == ("failing", "critical")
    assert found["disk./"].observed == "96.5%"
    assert found["inodes./"].state == "ok"
    assert found["disk./data"].state == "ok"
    assert (found["inodes./data"].state, found["inodes./data"].severity) == ("failing", "warning")
    assert (found["disk./srv"].state, found["disk./srv"].severity) == ("failing", "info")


async def test_no_samples_is_unknown_never_ok(db: Database, settings: Settings) -> None:
    server = await a_server(db)

    found = await results(db, server, settings)

    assert set(found) == {"memory", "cpu"}
    for result in found.values():
        assert result.state == "unknown"
        assert "no data" in result.detail


async def test_a_gap_or_a_silent_agent_leaves_the_window_unknown(
    db: Database, settings: Settings
) -> None:
    gap, silent, late_start = await a_server(db), await a_server(db), await a_server(db)
    times = window()
    high = {"cpu": 99.0, "memory": 99.0}  # at or above every level: only coverage decides
    # two minutes missing in the middle
    middle = NOW - timedelta(seconds=300)
    await write(
        db,
        [
            sample(gap, t, **high)
            for t in times
            if not middle <= t < middle + timedelta(seconds=120)
        ],
    )
    # stopped sending three minutes ago (its disks are still named, as unknown)
    await write(db, [sample(silent, t) for t in times if t < NOW - timedelta(minutes=3)])
    # only the last five minutes: the window's start is not covered
    await write(
        db, [sample(late_start, t, **high) for t in times if t > NOW - timedelta(minutes=5)]
    )

    for server in (gap, silent, late_start):
        found = await results(db, server, settings)
        assert found["cpu"].state == "unknown", server
        assert found["memory"].state == "unknown"
    found = await results(db, silent, settings)  # low values, but nothing recent: no verdict
    assert found["disk./"].state == "unknown"
    assert found["inodes./"].state == "unknown"


async def test_a_new_servers_low_samples_are_ok_before_the_window_fills(
    db: Database, settings: Settings
) -> None:
    """One recent sample under the lowest level breaks every sustain: a verdict, so a server
    just provisioned is not unknown (and three runs on, critical) for ten minutes."""
    fresh, busy = await a_server(db), await a_server(db)
    recent = [t for t in window() if t > NOW - timedelta(minutes=2)]
    await write(db, [sample(fresh, t) for t in recent])
    await write(db, [sample(busy, t, cpu=99.0) for t in recent[:-1]])
    await write(db, [sample(busy, recent[-1], cpu=50.0)])  # one dip, just now

    found = await results(db, fresh, settings)
    for check in ("cpu", "memory", "disk./", "inodes./"):
        assert found[check].state == "ok", (check, found[check])
        assert "not sustained above 80%" in found[check].detail
    assert (await results(db, busy, settings))["cpu"].state == "ok"


async def test_filesystems_from_before_the_window_stay_named(
    db: Database, settings: Settings
) -> None:
    server = await a_server(db)
    await write(
        db, [sample(server, NOW - timedelta(hours=2), filesystems=[fs("/", 50, 5), fs("/srv", 5)])]
    )

    found = await results(db, server, settings)

    assert {c: r.state for c, r in found.items()} == {
        "memory": "unknown",
        "cpu": "unknown",
        "disk./": "unknown",
        "inodes./": "unknown",
        "disk./srv": "unknown",  # btrfs: no inode check
    }


async def test_the_window_and_levels_are_settings(db: Database, tmp_path: Path) -> None:
    quick = Settings(
        home=tmp_path,
        health_sustain_seconds=1.0,
        health_sample_gap_seconds=0.3,
        health_resource_info_percent=50,
        health_resource_warning_percent=60,
        health_resource_critical_percent=70,
    )
    server = await a_server(db)
    times = every(0.25, NOW - timedelta(seconds=1.1), NOW - timedelta(seconds=0.05))
    older = [NOW - timedelta(seconds=30)]  # far below, but outside the 1-second window
    await write(db, [sample(server, t, cpu=5.0) for t in older])
    await write(db, [sample(server, t, cpu=65.0) for t in times])

    found = await results(db, server, quick)

    assert (found["cpu"].state, found["cpu"].severity, found["cpu"].threshold) == (
        "failing",
        "warning",
        "60%",
    )


def test_levels_must_ascend(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="must ascend"):
        Settings(home=tmp_path, health_resource_warning_percent=99)
