"""Resource checks from the samples agents already sent: no extra agent traffic.

Checks: ``disk.<mountpoint>`` and ``inodes.<mountpoint>`` per filesystem, ``memory``, ``cpu``.
A level counts only when it is *sustained*: every stored sample of the last
``MAILFLEET_HEALTH_SUSTAIN_SECONDS`` is at or above it, and the samples cover that window
(none missing for longer than ``MAILFLEET_HEALTH_SAMPLE_GAP_SECONDS``, at its start or end
either). A window the samples do not cover is ``unknown`` ("no data"): a server whose agent
stopped sending is not a healthy one. One exception: a recent sample under the lowest level
in it is a verdict (ok) however short the history, since it breaks every sustain — so a
server just provisioned is not "unknown" (and, three runs on, critical) for its first
``MAILFLEET_HEALTH_SUSTAIN_SECONDS``.

Levels (settings): 80 % → failing/info, 90 % → failing/warning, 95 % → failing/critical.
``threshold`` names the level crossed, ``observed`` the lowest value of the window (what was
sustained); the detail adds the latest value.

Memory use is ``1 - available / total``: the kernel's MemAvailable counts page cache and
reclaimable slabs as usable, so this is the pressure that leads to swapping or the OOM
killer; "used" alone varies with what the kernel/psutil version files under buffers and cache.
For a VPS cgroup the agent already reports available = limit - working set.

The 1-minute rollups are not used: they are minute-aligned (a window edge falls inside a
bucket), hold no totals (memory %), and no filesystems; 10 minutes of raw samples is ~40 rows.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.health.results import Result, Severity
from control_plane.metrics.models import MetricSample
from control_plane.metrics.series import filesystem_capacity
from control_plane.servers.models import Server
from control_plane.settings import Settings


@dataclass(frozen=True)
class Reading:
    """One sample's value of one resource, in per cent (None: not measurable in it)."""

    at: datetime
    percent: float | None


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime
    max_gap: timedelta

    def covered_by(self, times: Sequence[datetime]) -> bool:
        """Samples at ``times`` (sorted, inside the window) leave no gap wider than allowed."""
        if not times:
            return False
        edges = [self.start, *times, self.end]
        return all(b - a <= self.max_gap for a, b in pairwise(edges))


def levels(settings: Settings) -> list[tuple[float, Severity]]:
    """Highest first: the first level sustained decides the severity."""
    return [
        (settings.health_resource_critical_percent, "critical"),
        (settings.health_resource_warning_percent, "warning"),
        (settings.health_resource_info_percent, "info"),
    ]


def _pct(value: float) -> str:
    return f"{value:.1f}%"


def judge(
    check: str, what: str, readings: Sequence[Reading], window: Window, settings: Settings
) -> Result:
    """Sustained level of one resource over ``window`` (readings sorted by time)."""
    seconds = f"{(window.end - window.start).total_seconds():g} s"
    usable = [r for r in readings if r.percent is not None]
    first = levels(settings)[-1][0]
    if not window.covered_by([r.at for r in usable]):
        below = [r for r in usable if r.percent is not None and r.percent < first]
        if below and window.end - usable[-1].at <= window.max_gap:
            # A sample under the lowest level breaks every sustain: a verdict even while the
            # samples do not reach back over the whole window (a server just provisioned).
            return Result(
                check,
                "ok",
                "info",
                f"{what} not sustained above {first:g}%: {_pct(below[-1].percent or 0.0)} at "
                f"{below[-1].at:%H:%M:%S} UTC (samples since {usable[0].at:%H:%M:%S} UTC)",
                observed=_pct(min(r.percent for r in below if r.percent is not None)),
                threshold=f"{first:g}%",
            )
        newest = f"; newest sample {usable[-1].at.isoformat()}" if usable else ""
        return Result(
            check,
            "unknown",
            "warning",
            f"no data: the samples do not cover the last {seconds} of {what}{newest}",
        )
    values = [r.percent for r in usable if r.percent is not None]
    lowest, latest = min(values), values[-1]
    for level, severity in levels(settings):
        if lowest >= level:
            return Result(
                check,
                "failing",
                severity,
                f"{what} at or above {level:g}% for {seconds} (at least {_pct(lowest)}, "
                f"now {_pct(latest)})",
                observed=_pct(lowest),
                threshold=f"{level:g}%",
            )
    return Result(
        check,
        "ok",
        "info",
        f"{what} not above {first:g}% throughout the last {seconds} (now {_pct(latest)})",
        observed=_pct(lowest),
        threshold=f"{first:g}%",
    )


def _share(used: int, total: int) -> float | None:
    return 100.0 * used / total if total > 0 else None


def _filesystems(raw: str) -> list[dict[str, Any]]:
    try:
        parsed = json.loads(raw or "[]")
    except ValueError:
        return []
    return [fs for fs in parsed if isinstance(fs, dict) and fs.get("mountpoint")]


def filesystem_readings(
    rows: Iterable[tuple[datetime, str]],
) -> dict[str, tuple[list[Reading], list[Reading]]]:
    """mountpoint → (space readings, inode readings), from stored ``filesystems`` JSON.

    A filesystem with no inode table (``inodes_total`` 0: btrfs, or an agent from before
    inodes were sent) reads None, which leaves its inode window uncovered.
    """
    found: dict[str, tuple[list[Reading], list[Reading]]] = {}
    for at, raw in rows:
        for fs in _filesystems(raw):
            space, inodes = found.setdefault(str(fs["mountpoint"]), ([], []))
            space.append(Reading(at, _share(int(fs.get("used_bytes", 0)), _total(fs))))
            inodes.append(
                Reading(at, _share(int(fs.get("inodes_used", 0)), int(fs.get("inodes_total", 0))))
            )
    return found


def _total(fs: dict[str, Any]) -> int:
    free = fs.get("free_bytes")
    return int(
        filesystem_capacity(
            int(fs.get("used_bytes", 0)),
            None if free is None else int(free),
            int(fs.get("total_bytes", 0)),
        )
    )


async def resource_results(
    session: AsyncSession, server: Server, settings: Settings, now: datetime
) -> list[Result]:
    """``disk.<mount>``, ``inodes.<mount>``, ``memory`` and ``cpu`` for ``server`` at ``now``."""
    sustain = timedelta(seconds=settings.health_sustain_seconds)
    window = Window(now - sustain, now, timedelta(seconds=settings.health_sample_gap_seconds))
    rows = (
        await session.execute(
            select(
                MetricSample.sampled_at,
                MetricSample.cpu_percent,
                MetricSample.memory_total_bytes,
                MetricSample.memory_available_bytes,
                MetricSample.filesystems,
            )
            .where(
                MetricSample.server_id == server.id,
                MetricSample.sampled_at >= window.start,
                MetricSample.sampled_at <= now,
            )
            .order_by(MetricSample.sampled_at)
        )
    ).all()
    memory = [
        Reading(
            r.sampled_at,
            _share(r.memory_total_bytes - r.memory_available_bytes, r.memory_total_bytes),
        )
        for r in rows
    ]
    cpu = [Reading(r.sampled_at, float(r.cpu_percent)) for r in rows]
    results = [
        judge("memory", "memory use", memory, window, settings),
        judge("cpu", "CPU use", cpu, window, settings),
    ]
    disks = filesystem_readings((r.sampled_at, r.filesystems) for r in rows)
    has_inodes = {m: any(r.percent is not None for r in i) for m, (_, i) in disks.items()}
    known = await known_filesystems(session, server.id, window.start)
    for mountpoint, had_inodes in known.items():
        if mountpoint not in disks:  # gone quiet: reported unknown, not dropped
            disks[mountpoint] = ([], [])
            has_inodes[mountpoint] = had_inodes
    for mountpoint, (space, inodes) in sorted(disks.items()):
        results.append(
            judge(f"disk.{mountpoint}", f"space on {mountpoint}", space, window, settings)
        )
        if has_inodes[mountpoint]:  # no inode table, nothing to run out of: no check
            results.append(
                judge(f"inodes.{mountpoint}", f"inodes on {mountpoint}", inodes, window, settings)
            )
    return results


async def known_filesystems(
    session: AsyncSession, server_id: uuid.UUID, before: datetime | None = None
) -> dict[str, bool]:
    """mountpoint → has inodes, from the server's newest sample (before ``before``): here,
    before the window, so a server that stopped sending still has its disk checks (as
    unknown) rather than none; capacity names the series to forecast by it."""
    stmt = select(MetricSample.filesystems).where(MetricSample.server_id == server_id)
    if before is not None:
        stmt = stmt.where(MetricSample.sampled_at < before)
    raw = await session.scalar(stmt.order_by(MetricSample.sampled_at.desc()).limit(1))
    return {
        str(fs["mountpoint"]): int(fs.get("inodes_total", 0)) > 0
        for fs in _filesystems(raw or "[]")
    }
