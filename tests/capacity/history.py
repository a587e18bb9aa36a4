"""Hourly history with a known shape: a linear trend whose daily *peak* reaches a level on a
known day, a daily cycle, Gaussian noise, and planted anomalies; and the same written into
``metric_rollups_1h`` (plus one raw sample naming the filesystems) for service tests."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import delete, insert

from control_plane.db.engine import Database
from control_plane.metrics.models import MetricRollupHourly, MetricSample
from control_plane.servers.models import Server

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
GiB = 2**30


@dataclass(frozen=True)
class Shape:
    """Percent at hour t: the daily peak is ``level`` at ``now + days_to_level`` and climbs
    ``slope`` points a day; the day swings ``amplitude`` under it (peak at ``peak_hour``
    UTC)."""

    level: float = 90.0
    days_to_level: float = 10.0
    slope: float = 1.0
    amplitude: float = 10.0
    noise: float = 1.0
    seed: int = 1
    peak_hour: int = 14
    planted: Mapping[datetime, float] = field(default_factory=dict)

    def series(self, now: datetime, days: float) -> list[tuple[datetime, float]]:
        rng = random.Random(self.seed)
        first = now.replace(minute=0, second=0, microsecond=0) - timedelta(days=days)
        out = []
        at = first
        while at <= now:
            if at in self.planted:
                out.append((at, self.planted[at]))
            else:
                d = (at - now) / DAY
                # 1 at the peak hour, -1 twelve hours off: the peak sits ``amplitude`` above
                # the cycle's midline
                cycle = math.cos(2 * math.pi * (at.hour - self.peak_hour) / 24)
                peak = self.level + self.slope * (d - self.days_to_level)
                value = peak - self.amplitude + self.amplitude * cycle + rng.gauss(0, self.noise)
                out.append((at, value))
            at += HOUR
        return out


def mid_window_hour(now: datetime) -> int:
    """The hour in the middle of the forecast's 24-hour windows ending at ``now``'s next
    hour: a daily peak there is where the fit places each day's peak, so a forecast day
    does not move by up to half a day with the time of day a test runs at."""
    return (now.replace(minute=0, second=0, microsecond=0) + HOUR - 12 * HOUR).hour


def hour_at(now: datetime, days_ago: float, hour: int) -> datetime:
    """The bucket at ``hour``:00 UTC about ``days_ago`` days before ``now``."""
    day = (now - timedelta(days=days_ago)).replace(minute=0, second=0, microsecond=0)
    return day.replace(hour=hour)


async def write_history(
    db: Database,
    server: Server,
    percents: Mapping[str, Iterable[tuple[datetime, float]]],
    *,
    mount: str = "/",
    disk_total: float = 100 * GiB,
    reserve: float = 0.0,
) -> None:
    """Replace the server's hourly rows with these per-cent series (``cpu``, ``memory``,
    ``disk``, ``inodes``), written as the gauges the rollups hold (disk: of the space left
    after the root ``reserve``); one raw sample names the filesystem."""
    memory_total, inodes_total = 8 * GiB, 1_000_000
    rows: list[dict[str, object]] = []

    def add(metric: str, at: datetime, value: float) -> None:
        rows.append(
            {
                "server_id": server.id, "tenant_id": server.tenant_id, "metric": metric,
                "bucket": at, "count": 60, "sum": 60 * value, "min": value, "max": value,
            }
        )  # fmt: skip

    usable = disk_total - reserve
    newest: datetime | None = None
    for kind, points in percents.items():
        for at, pct in points:
            newest = at if newest is None or at > newest else newest
            if kind == "cpu":
                add("cpu_percent", at, pct)
            elif kind == "memory":
                add("memory_total_bytes", at, memory_total)
                add("memory_available_bytes", at, memory_total * (1 - pct / 100))
            elif kind == "disk":
                add(f"fs_used_bytes:{mount}", at, usable * pct / 100)
                add(f"fs_free_bytes:{mount}", at, usable * (1 - pct / 100))
                add(f"fs_total_bytes:{mount}", at, disk_total)
            elif kind == "inodes":
                add(f"fs_inodes_used:{mount}", at, inodes_total * pct / 100)
                add(f"fs_inodes_total:{mount}", at, inodes_total)
    assert newest is not None
    used = int(usable * 0.5)
    fs = {
        "mountpoint": mount, "device": "/dev/vda1", "fstype": "ext4",
        "total_bytes": int(disk_total), "used_bytes": used,
        "free_bytes": int(usable) - used, "inodes_total": inodes_total, "inodes_used": 1,
    }  # fmt: skip
    async with db.session() as session:
        for table in (MetricRollupHourly, MetricSample):
            await session.execute(delete(table).where(table.server_id == server.id))
        await session.execute(insert(MetricRollupHourly), rows)
        await session.execute(
            insert(MetricSample).values(
                server_id=server.id, tenant_id=server.tenant_id, sampled_at=newest,
                batch_sequence=1, cpu_percent=1.0, load1=0.0, load5=0.0, load15=0.0,
                memory_total_bytes=memory_total, memory_used_bytes=1,
                memory_available_bytes=memory_total, swap_total_bytes=0, swap_used_bytes=0,
                disk_read_bytes=0, disk_write_bytes=0, net_rx_bytes=0, net_tx_bytes=0,
                process_count=1, filesystems=json.dumps([fs]),
            )
        )  # fmt: skip


def flat(now: datetime, days: float, value: float) -> list[tuple[datetime, float]]:
    return Shape(level=value, slope=0.0, amplitude=0.0, noise=0.0).series(now, days)
