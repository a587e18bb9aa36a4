"""A server's usage (series by resource, with summaries) and the fleet's (totals, limits)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from pydantic_core import to_json
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.health.resources import filesystem_readings
from control_plane.metrics.models import MetricSample
from control_plane.metrics.series import filesystem_capacity, filesystem_series, split_series
from control_plane.servers.models import Server
from control_plane.servers.service import get_server
from control_plane.usage.schemas import (
    FleetTotalsOut,
    FleetUsageOut,
    LimitOut,
    UsageOut,
)
from control_plane.usage.series import (
    EPOCH,
    STEP_SECONDS,
    Point,
    Series,
    TierReach,
    UsageStep,
    read_series,
)
from control_plane.usage.summary import summarize

# numpy is imported inside the functions that compute: serve and the CLI start without it.
if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from control_plane.usage.series import Floats, Ints

# The widest range each step is chosen for when the caller names none (≤ ~2,200 points).
DEFAULT_STEPS: tuple[tuple[timedelta, UsageStep], ...] = (
    (timedelta(hours=1), "raw"),
    (timedelta(days=1), "1m"),
    (timedelta(days=7), "5m"),
    (timedelta(days=21), "15m"),
    (timedelta(days=92), "1h"),
)
DEFAULT_RANGE = timedelta(days=7)

# Series name (or filesystem gauge) → (resource, unit).
RESOURCES: dict[str, tuple[str, str]] = {
    "cpu_percent": ("cpu", "%"),
    "load1": ("load", "load"),
    "load5": ("load", "load"),
    "load15": ("load", "load"),
    "memory_used_bytes": ("memory", "bytes"),
    "memory_available_bytes": ("memory", "bytes"),
    "memory_total_bytes": ("memory", "bytes"),
    "memory_percent": ("memory", "%"),
    "swap_used_bytes": ("swap", "bytes"),
    "swap_total_bytes": ("swap", "bytes"),
    "swap_percent": ("swap", "%"),
    "fs_used_bytes": ("filesystem", "bytes"),
    "fs_total_bytes": ("filesystem", "bytes"),
    "fs_free_bytes": ("filesystem", "bytes"),
    "fs_used_percent": ("filesystem", "%"),
    "fs_inodes_used": ("filesystem", "inodes"),
    "fs_inodes_total": ("filesystem", "inodes"),
    "fs_inodes_percent": ("filesystem", "%"),
    "net_rx_bytes_per_second": ("network", "bytes/s"),
    "net_tx_bytes_per_second": ("network", "bytes/s"),
    "disk_read_bytes_per_second": ("disk_io", "bytes/s"),
    "disk_write_bytes_per_second": ("disk_io", "bytes/s"),
    "process_count": ("processes", "processes"),
    "mail_queue_messages": ("mail_queue", "messages"),
}
RESOURCE_ORDER = (
    "cpu", "load", "memory", "swap", "filesystem", "network", "disk_io", "processes", "mail_queue"
)  # fmt: skip


Resource = Literal["disk", "memory", "cpu"]


def default_step(span: timedelta) -> UsageStep:
    for widest, step in DEFAULT_STEPS:
        if span <= widest:
            return step
    return "1d"


def _aligned(t: Ints, whole: Series | None) -> tuple[Floats, npt.NDArray[np.bool_]]:
    """``whole``'s averages at the times ``t`` (0 where it has none) and where it has one."""
    import numpy as np

    if whole is None or not len(whole):
        return np.zeros(len(t)), np.zeros(len(t), bool)
    at = np.minimum(np.searchsorted(whole.t, t), len(whole) - 1)
    found = whole.t[at] == t
    return np.where(found, whole.avg[at], 0.0), found


def _ratio(part: Series, whole: Series, used: Callable[[Floats, Floats], Floats]) -> Series:
    """Per cent per bucket: ``used(part value, whole avg)`` over the whole's average.

    min/max come from the part's min/max against the bucket's average total (totals change
    only on a resize), so a bucket's min ≤ avg ≤ max still holds."""
    import numpy as np

    total, found = _aligned(part.t, whole)
    keep = found & (total != 0)
    p, total = part.take(keep), total[keep]
    a, b = 100.0 * used(p.min, total) / total, 100.0 * used(p.max, total) / total
    # as min(a, b) and max(a, b) choose
    low, high = np.where(b < a, b, a), np.where(b > a, b, a)
    return Series(p.t, 100.0 * used(p.avg, total) / total, low, high, p.count)


def _df_capacity(series: dict[str, Series], mountpoint: str) -> Series | None:
    """Per bucket, what a filesystem's used space is a share of
    (``metrics.series.filesystem_capacity``: used + free, else the total)."""
    import numpy as np

    used = series.get(filesystem_series("fs_used_bytes", mountpoint))
    if used is None:
        return None
    free, has_free = _aligned(used.t, series.get(filesystem_series("fs_free_bytes", mountpoint)))
    total, _ = _aligned(used.t, series.get(filesystem_series("fs_total_bytes", mountpoint)))
    columns = (used.avg.tolist(), free.tolist(), has_free.tolist(), total.tolist())
    capacity = [
        filesystem_capacity(u, f if has else None, t) for u, f, has, t in zip(*columns, strict=True)
    ]
    zeros = np.zeros(len(used))
    return Series(used.t, np.asarray(capacity, np.float64), zeros, zeros, used.count)


def with_percents(series: dict[str, Series]) -> dict[str, Series]:
    """Adds memory_percent (1 - available / total), swap_percent and per filesystem
    fs_used_percent (used / (used + free), df's Use%) and fs_inodes_percent: the shares
    health's resource checks and capacity's forecasts judge."""
    out = dict(series)

    def add(
        name: str, part: str, whole: Series | None, used: Callable[[Floats, Floats], Floats]
    ) -> None:
        if part in series and whole is not None and len(whole):
            points = _ratio(series[part], whole, used)
            if len(points):
                out[name] = points

    add("memory_percent", "memory_available_bytes", series.get("memory_total_bytes"),
        lambda v, t: t - v)  # fmt: skip
    add("swap_percent", "swap_used_bytes", series.get("swap_total_bytes"), lambda v, t: v)
    for name in series:
        gauge, mountpoint = split_series(name)
        if gauge == "fs_used_bytes" and mountpoint is not None:
            add(filesystem_series("fs_used_percent", mountpoint), name,
                _df_capacity(series, mountpoint), lambda v, t: v)  # fmt: skip
        elif gauge == "fs_inodes_used" and mountpoint is not None:
            add(filesystem_series("fs_inodes_percent", mountpoint), name,
                series.get(filesystem_series("fs_inodes_total", mountpoint)),
                lambda v, t: v)  # fmt: skip
    return out


# What follows each column's value in a point's JSON (after the time: ``,"avg":``).
AFTER_COLUMN = (b',"min":', b',"max":', b',"count":', b"},")


@dataclass(frozen=True)
class Usage:
    server_id: uuid.UUID
    start: datetime
    end: datetime
    step: UsageStep
    series: dict[str, Series]

    def rows(self) -> Iterator[tuple[str, Point]]:
        """(series, point) for every point, by series then time: the export's rows."""
        for name in sorted(self.series):
            for point in self.series[name]:
                yield name, point

    def grouped(self) -> list[tuple[str, str | None, list[tuple[str, str, Series]]]]:
        """(resource, mountpoint, [(series name, unit, series)]) in the answer's order."""
        grouped: dict[tuple[str, str | None], list[tuple[str, str, Series]]] = {}
        for name in sorted(self.series):
            gauge, mountpoint = split_series(name)
            if gauge in RESOURCES:
                resource, unit = RESOURCES[gauge]
                grouped.setdefault((resource, mountpoint), []).append(
                    (name, unit, self.series[name])
                )
        ordered = sorted(grouped, key=lambda k: (RESOURCE_ORDER.index(k[0]), k[1] or ""))
        return [(r, m, grouped[r, m]) for r, m in ordered]

    def head(self) -> dict[str, Any]:
        return {"server_id": self.server_id, "from": self.start, "to": self.end, "step": self.step}

    def document(self) -> dict[str, Any]:
        """The UsageOut answer as plain data (a dict per point: ``json()`` does without)."""
        seconds = STEP_SECONDS.get(self.step)
        fields = Point._fields
        return self.head() | {
            "resources": [
                {
                    "resource": r,
                    "mountpoint": m,
                    "series": [
                        {
                            "name": name,
                            "unit": unit,
                            "summary": asdict(summarize(points, seconds)),
                            "points": [dict(zip(fields, p, strict=True)) for p in points],
                        }
                        for name, unit, points in series
                    ],
                }
                for r, m, series in self.grouped()
            ]
        }

    def json(self, indent: int | None = None) -> bytes:
        """``document()`` serialized by pydantic-core, byte for byte; unindented, its points
        are joined from each column serialized whole (a dict per point took longer than the
        rest of the answer)."""
        if indent is not None:
            return to_json(self.document(), indent=indent)
        seconds = STEP_SECONDS.get(self.step)
        grouped = self.grouped()
        pieces = _point_pieces([s for _, _, group in grouped for _, _, s in group])
        out = [to_json(self.head())[:-1], b',"resources":[']
        for r, m, group in grouped:
            out += [to_json({"resource": r, "mountpoint": m})[:-1], b',"series":[']
            for name, unit, points in group:
                summary = asdict(summarize(points, seconds))
                out += [to_json({"name": name, "unit": unit, "summary": summary})[:-1]]
                out += [b',"points":[', *next(pieces), b"]},"]
            out[-1] = out[-1][:-1] + b"]},"
        out[-1] = out[-1][:-1] if grouped else out[-1]
        return b"".join(out) + b"]}"

    def out(self) -> UsageOut:
        return UsageOut.model_validate(self.document())


def _point_pieces(series: list[Series]) -> Iterator[list[bytes]]:
    """Per series, its points' JSON objects (comma-separated) as pieces to join: as
    pydantic-core writes them one by one, from each column of all the series serialized at
    once (no value's text has a comma) and each distinct time once."""
    import numpy as np

    if not series:
        return
    t, avg, low, high, count = (
        np.concatenate([getattr(s, c) for s in series]) for c in Series.__slots__
    )
    unique, at = np.unique(t, return_inverse=True)
    texts = to_json([EPOCH + timedelta(microseconds=u) for u in unique.tolist()])[1:-1]
    prefixes = [b'{"t":' + text + b',"avg":' for text in texts.split(b",")]
    n = len(t)
    pieces: list[bytes] = [b""] * (9 * n)
    pieces[0::9] = list(map(prefixes.__getitem__, at.tolist()))
    for k, (column, after) in enumerate(zip((avg, low, high, count), AFTER_COLUMN, strict=True)):
        pieces[1 + 2 * k :: 9] = to_json(column.tolist())[1:-1].split(b",")
        pieces[2 + 2 * k :: 9] = [after] * n
    first = 0
    for s in series:
        last = first + 9 * len(s)
        if last > first:
            pieces[last - 1] = b"}"
        yield pieces[first:last]
        first = last


async def server_usage(
    session: AsyncSession,
    server_id: uuid.UUID,
    start: datetime | None,
    end: datetime | None,
    step: UsageStep | None,
    reach: TierReach,
    now: datetime,
) -> Usage:
    """The server's series in [start, end) (default: the last 7 days) at ``step`` (default:
    chosen from the range), with the derived per-cent series. NotFound for a server the
    session cannot see (another tenant's)."""
    await get_server(session, server_id)
    end_at = end or now
    start_at = start or end_at - DEFAULT_RANGE
    chosen = step or default_step(end_at - start_at)
    series = await read_series(session, server_id, start_at, end_at, chosen, reach=reach)
    return Usage(server_id, start_at, end_at, chosen, with_percents(series))


@dataclass(frozen=True)
class _Latest:
    """A server's newest fresh sample, as the fleet view reads it."""

    server_id: uuid.UUID
    server_name: str
    tenant_id: uuid.UUID
    at: datetime
    cpu_percent: float
    memory_total: float
    memory_available: float
    net_rx: float
    net_tx: float
    mail_queue: int
    filesystems: str

    def limit(self, percent: float, mountpoint: str | None = None) -> LimitOut:
        return LimitOut(
            server_id=self.server_id,
            server_name=self.server_name,
            tenant_id=self.tenant_id,
            percent=percent,
            mountpoint=mountpoint,
            sampled_at=self.at,
        )


async def fleet_usage(
    session: AsyncSession,
    tenant_id: uuid.UUID | None,
    workspace_id: uuid.UUID | None,
    now: datetime,
    fresh: timedelta,
    limit: int,
) -> FleetUsageOut:
    """Totals over the servers the session sees (filtered by tenant/workspace) from each
    one's newest sample within ``fresh``, and the ``limit`` servers highest on disk, memory
    and CPU now. A server without a fresh sample counts in ``servers`` only (unknown)."""
    stmt = select(Server.id, Server.name, Server.tenant_id)
    if tenant_id is not None:
        stmt = stmt.where(Server.tenant_id == tenant_id)
    if workspace_id is not None:
        stmt = stmt.where(Server.workspace_id == workspace_id)
    servers = {row.id: (row.id, row.name, row.tenant_id) for row in await session.execute(stmt)}
    latest: dict[uuid.UUID, _Latest] = {}
    if servers:
        rows = await session.execute(
            select(
                MetricSample.server_id,
                MetricSample.sampled_at,
                MetricSample.cpu_percent,
                MetricSample.memory_total_bytes,
                MetricSample.memory_available_bytes,
                MetricSample.net_rx_bytes_per_second,
                MetricSample.net_tx_bytes_per_second,
                MetricSample.mail_queue_messages,
                MetricSample.filesystems,
            )
            .where(
                MetricSample.server_id.in_(list(servers)),
                MetricSample.sampled_at >= now - fresh,
                MetricSample.sampled_at <= now,
            )
            .order_by(MetricSample.sampled_at)
        )
        for r in rows:  # oldest first: the newest overwrites
            _, name, owner = servers[r.server_id]
            latest[r.server_id] = _Latest(
                r.server_id, name, owner, r.sampled_at, float(r.cpu_percent),
                float(r.memory_total_bytes), float(r.memory_available_bytes),
                r.net_rx_bytes_per_second or 0.0, r.net_tx_bytes_per_second or 0.0,
                r.mail_queue_messages or 0, r.filesystems or "[]",
            )  # fmt: skip
    return FleetUsageOut(
        totals=_totals(len(servers), list(latest.values())),
        closest_to_limits=_limits(list(latest.values()), limit),
    )


def _totals(servers: int, latest: list[_Latest]) -> FleetTotalsOut:
    disk_used = disk_total = 0
    for item in latest:
        for fs in json.loads(item.filesystems):
            disk_used += int(fs.get("used_bytes") or 0)
            disk_total += int(fs.get("total_bytes") or 0)
    return FleetTotalsOut(
        servers=servers,
        reporting=len(latest),
        cpu_percent_average=(sum(i.cpu_percent for i in latest) / len(latest)) if latest else None,
        memory_used_bytes=int(sum(i.memory_total - i.memory_available for i in latest)),
        memory_total_bytes=int(sum(i.memory_total for i in latest)),
        disk_used_bytes=disk_used,
        disk_total_bytes=disk_total,
        net_rx_bytes_per_second=sum(i.net_rx for i in latest),
        net_tx_bytes_per_second=sum(i.net_tx for i in latest),
        mail_queue_messages=sum(i.mail_queue for i in latest),
    )


def _limits(latest: list[_Latest], limit: int) -> dict[Resource, list[LimitOut]]:
    """Per resource, the ``limit`` highest servers now. Memory and disk per cent as health
    judges them (1 - available / total; df's used / (used + free))."""
    found: dict[Resource, list[LimitOut]] = {"disk": [], "memory": [], "cpu": []}
    for item in latest:
        found["cpu"].append(item.limit(item.cpu_percent))
        if item.memory_total > 0:
            used = item.memory_total - item.memory_available
            found["memory"].append(item.limit(100.0 * used / item.memory_total))
        disks = filesystem_readings([(item.at, item.filesystems)])
        shares = [
            (r[0].percent, m) for m, (r, _) in disks.items() if r and r[0].percent is not None
        ]
        if shares:
            percent, mountpoint = max(shares)
            found["disk"].append(item.limit(percent or 0.0, mountpoint))
    return {k: sorted(v, key=lambda o: -o.percent)[:limit] for k, v in found.items()}
