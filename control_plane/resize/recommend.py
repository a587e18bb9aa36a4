"""The plan a server should be on, from its usage (VPA-style: target = p90 × headroom).

Per resource, over the window's hourly points: CPU in cores (the hour's average ``cpu_percent``
× the current plan's vCPUs / 100: CPU is shared, an hour's average is what it costs), memory
bytes used and disk bytes used on the root filesystem (or the largest one without a root),
both from the hour's maximum (running out of either breaks the server, so peaks count). The
target is the percentile (``MAILFLEET_RECOMMENDATION_PERCENTILE``) × headroom
(``MAILFLEET_RECOMMENDATION_HEADROOM``); the recommendation is the cheapest plan in the
provider's catalog, in the current plan's currency, holding every target — up or down.

Disks: a plan with a smaller disk than the current one is never offered. That is an
assumption for Hostwinds: its reference (upgrade-billing.md) describes upgrades only and says
nothing of shrinking a disk, which most clouds cannot do. The local
provider's disk figure is only a number in its records — its VPSs share the host's
filesystems — so there disk neither sizes a plan nor refuses one (its evidence is shown).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from control_plane.metrics.series import filesystem_series, split_series
from control_plane.provisioning.providers.base import Plan

if TYPE_CHECKING:
    from control_plane.usage.series import Floats, Series

GIB = 1024**3
MIB = 1024**2
DISKLESS = frozenset({"local"})  # providers whose plans do not limit disk
CPU, MEMORY = "cpu_percent", "memory_used_bytes"
FS_USED, FS_TOTAL = "fs_used_bytes", "fs_total_bytes"


@dataclass(frozen=True)
class Target:
    resource: str
    unit: str
    series: str
    hours: int
    percentile: float
    target: float


@dataclass(frozen=True)
class Choice:
    plan: Plan | None  # None: no plan of the catalog holds every target
    driver: str | None


def capacity(plan: Plan, resource: str) -> float:
    if resource == "cpu":
        return float(plan.vcpus)
    if resource == "memory":
        return float(plan.memory_mb * MIB)
    return float(plan.disk_gb * GIB)


def disk_series(series: dict[str, Series]) -> str | None:
    """The used-bytes series of ``/``, else of the largest filesystem (by its total)."""
    if filesystem_series(FS_USED, "/") in series:
        return filesystem_series(FS_USED, "/")
    sizes = {
        split_series(name)[1]: float(points.max.max()) if len(points) else 0.0
        for name, points in series.items()
        if split_series(name)[0] == FS_TOTAL
    }
    for mountpoint in sorted(sizes, key=lambda m: -sizes[m]):
        name = filesystem_series(FS_USED, str(mountpoint))
        if name in series:
            return name
    return None


def targets(
    series: dict[str, Series],
    vcpus: int,
    percentile: float,
    headroom: float,
    min_hours: int,
) -> tuple[list[Target], str | None]:
    """Each resource's target, or why there is not enough data (then no targets)."""
    import numpy as np

    disk = disk_series(series)
    none = np.zeros(0)

    def column(name: str, field: str) -> Floats:
        found = series.get(name)
        return none if found is None else getattr(found, field)

    wanted = (
        ("cpu", "cores", CPU, column(CPU, "avg") * vcpus / 100.0),
        ("memory", "bytes", MEMORY, column(MEMORY, "max")),
        ("disk", "bytes", disk or FS_USED, column(disk or "", "max")),
    )
    found: list[Target] = []
    for resource, unit, name, values in wanted:
        if len(values) < min_hours:
            return [], (
                f"not enough data: {len(values)} hour(s) of {name} in the window, at least "
                f"{min_hours} needed"
            )
        value = float(np.percentile(values, percentile))
        found.append(Target(resource, unit, name, len(values), value, value * headroom))
    return found, None


def choose(
    wanted: Sequence[Target], catalog: Sequence[Plan], current: Plan, provider: str
) -> Choice:
    """The cheapest plan holding every target (ties: fewer resources, then the current),
    and the resource that sizes it: the one using the largest share of that plan."""
    diskless = provider in DISKLESS
    sized = [t for t in wanted if not (diskless and t.resource == "disk")]
    fits = [
        plan
        for plan in catalog
        if plan.currency == current.currency
        and all(capacity(plan, t.resource) >= t.target for t in sized)
        and (diskless or plan.disk_gb >= current.disk_gb)
    ]
    if not fits:
        return Choice(None, _driver(sized, max(catalog, key=size, default=current)))
    best = min(fits, key=lambda p: (p.monthly_price, size(p), p.id != current.id))
    return Choice(best, _driver(sized, best))


def size(plan: Plan) -> tuple[int, int, int]:
    return (plan.vcpus, plan.memory_mb, plan.disk_gb)


def _driver(wanted: Sequence[Target], plan: Plan) -> str | None:
    shares = {t.resource: t.target / max(capacity(plan, t.resource), 1e-9) for t in wanted}
    return max(shares, key=lambda r: shares[r]) if shares else None
