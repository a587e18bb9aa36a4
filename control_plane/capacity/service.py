"""A server's capacity: its resources in % of capacity hour by hour, their forecasts and
anomalies, and the ``forecast.*`` checks sent to the incidents.

Resources and their capacity, as health's resource checks judge them (so a forecast of
90 % means the level health's ``disk./`` check fails at): CPU in %; memory as
``1 - available / total``; a filesystem's space as used over what df divides by (used +
available to users: the root reserve is not usable; ``metrics.series.filesystem_capacity``),
its inodes as used over total where it has an inode table. The server's newest raw sample
names its filesystems (no raw sample for the raw tier's 14 days: only CPU and memory, and
their data is stale anyway).

The ``forecast.<check>`` check of a resource (``forecast.disk./`` beside health's
``disk./``) fails when its fitted daily peak crosses 80/90/95 % (health's levels and
severities) within ``MAILFLEET_FORECAST_WARNING_DAYS``. Levels already crossed now are
health's: they are not forecast again, so a disk at 96 % is one incident (health's
``disk./``), and a forecast incident for it resolves when its prediction comes true and
health takes over. A disk at 91 % heading for 95 % within the week is both: health's warning
now and the forecast's critical "95 % by Thursday", two different facts.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.capacity import anomalies, forecast
from control_plane.capacity.schemas import AnomalyOut, CapacityOut, CrossingOut, ForecastOut
from control_plane.errors import InvalidInput
from control_plane.health.resources import known_filesystems, levels
from control_plane.health.results import Severity
from control_plane.incidents import service as incidents
from control_plane.incidents.signals import Signal, server_signal
from control_plane.metrics.series import filesystem_series
from control_plane.servers.models import Server
from control_plane.settings import Settings
from control_plane.usage.series import TierReach, read_series
from control_plane.usage.service import with_percents

Kind = Literal["cpu", "memory", "disk", "inodes"]
State = Literal["ok", "warning", "unknown"]
PREFIX = "forecast."
FULL = 100.0
RESOLVE_MARGIN_DAYS = 1.0


@dataclass(frozen=True)
class Resource:
    kind: Kind
    mountpoint: str | None = None

    @property
    def check(self) -> str:
        """Health's check of the resource (``disk./``); its forecast's is ``forecast.`` + it."""
        return self.kind if self.mountpoint is None else f"{self.kind}.{self.mountpoint}"

    @property
    def label(self) -> str:
        return {
            "cpu": "CPU use",
            "memory": "memory use",
            "disk": f"space on {self.mountpoint}",
            "inodes": f"inodes on {self.mountpoint}",
        }[self.kind]


@dataclass(frozen=True)
class Report:
    """One resource's forecast, what it means for its check, and its anomalies."""

    resource: Resource
    forecast: forecast.Forecast
    state: State
    severity: Severity | None
    summary: str
    baseline: anomalies.BaselineKind = "none"
    anomalies: list[anomalies.Anomaly] = field(default_factory=list)


async def percent_series(
    session: AsyncSession, server_id: uuid.UUID, start: datetime, end: datetime, reach: TierReach
) -> dict[Resource, list[tuple[datetime, float]]]:
    """Each resource's hourly averages in % of its capacity over [start, end): the usage
    API's per-cent series (``usage.service.with_percents``), the shares health judges. The
    filesystems are those of the server's newest raw sample."""
    disks = await known_filesystems(session, server_id)
    names = ["cpu_percent", "memory_total_bytes", "memory_available_bytes"]
    for mountpoint, has_inodes in disks.items():
        gauges = ["fs_used_bytes", "fs_free_bytes", "fs_total_bytes"]
        gauges += ["fs_inodes_used", "fs_inodes_total"] if has_inodes else []
        names += [filesystem_series(g, mountpoint) for g in gauges]
    series = await read_series(session, server_id, start, end, "1h", names, reach=reach)
    percents = with_percents(series)

    def hourly(name: str) -> list[tuple[datetime, float]]:
        found = percents.get(name)
        return [] if found is None else list(zip(found.times(), found.avg.tolist(), strict=True))

    out = {Resource("cpu"): hourly("cpu_percent"), Resource("memory"): hourly("memory_percent")}
    for m, has_inodes in sorted(disks.items()):
        out[Resource("disk", m)] = hourly(filesystem_series("fs_used_percent", m))
        if has_inodes:
            out[Resource("inodes", m)] = hourly(filesystem_series("fs_inodes_percent", m))
    return out


def judge(
    resource: Resource,
    result: forecast.Forecast,
    settings: Settings,
    now: datetime,
    *,
    extra_days: float = 0.0,
) -> tuple[State, Severity | None, str]:
    """The forecast check's verdict: warning (at health's severity for the level) when a
    level not yet crossed is forecast within the warning days (plus ``extra_days``), ok when
    none is (or every level is already crossed: health's "now" check has it), unknown when
    it cannot tell."""
    what = resource.label
    if not result.known:
        return "unknown", None, f"{what}: no forecast: {result.reason}"
    assert result.peak is not None and result.slope_per_day is not None
    horizon = now + timedelta(days=settings.forecast_warning_days + extra_days)
    crossings = {c.level: c for c in result.crossings}
    trend = (
        f"busiest hour of the last 24 h {result.peak:.1f}%, "
        f"{result.slope_per_day:+.2f} points a day"
    )
    for level, severity in levels(settings):  # highest first
        c = crossings[level]
        if c.status == "forecast" and c.at is not None and c.at <= horizon:
            return (
                "warning",
                severity,
                f"{what} forecast to reach {level:g}% {_when(c, now)} ({trend})",
            )
    ahead = sorted(level for level, _ in levels(settings) if crossings[level].status != "above")
    if not ahead:
        top = max(level for level, _ in levels(settings))
        return (
            "ok",
            None,
            (f"{what} already at or above {top:g}% ({trend}): nothing left to forecast"),
        )
    return (
        "ok",
        None,
        (
            f"{what} not forecast to reach {ahead[0]:g}% within "
            f"{settings.forecast_warning_days:g} days ({trend})"
        ),
    )


def _when(c: forecast.Crossing, now: datetime) -> str:
    assert c.at is not None
    band = f"{c.earliest:%Y-%m-%d %H:%M}" if c.earliest else "?"
    band += f" to {c.latest:%Y-%m-%d %H:%M}" if c.latest else " or later"
    days = (c.at - now) / timedelta(days=1)
    return f"around {c.at:%Y-%m-%d %H:%M} UTC, in {days:.1f} days (band {band})"


def thresholds(settings: Settings) -> list[float]:
    """The levels forecast: health's three, and full."""
    return sorted({level for level, _ in levels(settings)} | {FULL})


async def reports(
    session: AsyncSession,
    server: Server,
    settings: Settings,
    now: datetime,
    *,
    window_days: float | None = None,
    with_anomalies: bool = True,
) -> list[Report]:
    """Every resource's forecast (and anomalies) over the window ending ``now``."""
    window = timedelta(days=window_days or settings.forecast_window_days)
    end = forecast.floor_hour(now) + forecast.HOUR
    series = await percent_series(session, server.id, end - window, end, TierReach.of(settings))
    out = []
    for resource, points in series.items():
        result = forecast.forecast(
            points, now, thresholds(settings), min_days=settings.forecast_min_days
        )
        state, severity, summary = judge(resource, result, settings, now)
        kind: anomalies.BaselineKind = "none"
        found: list[anomalies.Anomaly] = []
        if with_anomalies:
            kind, found = anomalies.find(resource.label, points, settings.forecast_anomaly_k)
        out.append(Report(resource, result, state, severity, summary, kind, found))
    return out


def _signal(
    server: Server, check: str, state: Literal["ok", "failing"], severity: Severity, summary: str
) -> Signal:
    return server_signal(server, check, state, severity, f"{server.name}: {check} {summary}")


async def check_server(
    session: AsyncSession, server: Server, settings: Settings, now: datetime
) -> list[Report]:
    """Forecast the server's resources and tell the incidents (in the caller's
    transaction): failing checks open or keep their incident; ok ones resolve an open one
    (ok is sent only then, as health does); unknown ones change nothing. A ``forecast.*``
    incident whose resource is no longer reported (a filesystem unmounted) is resolved.

    Hysteresis instead of health's flap guard: an open incident resolves only once no level
    is forecast within the warning days plus ``RESOLVE_MARGIN_DAYS``, so a crossing that
    wobbles around the 7-day edge from one hour's fit to the next does not open and resolve
    an incident every hour."""
    found = await reports(session, server, settings, now, with_anomalies=False)
    still_open = {
        check
        for check in await incidents.open_checks(
            session, server.tenant_id, "server", str(server.id)
        )
        if check.startswith(PREFIX)
    }
    signals = []
    for r in found:
        check = PREFIX + r.resource.check
        state, severity, summary = r.state, r.severity, r.summary
        if state == "ok" and check in still_open:
            state, severity, summary = judge(
                r.resource, r.forecast, settings, now, extra_days=RESOLVE_MARGIN_DAYS
            )
        if state == "warning":
            signals.append(_signal(server, check, "failing", severity or "warning", summary))
        elif state == "ok" and check in still_open:
            signals.append(_signal(server, check, "ok", "info", summary))
    reported = {PREFIX + r.resource.check for r in found}
    if any(r.resource.kind == "disk" for r in found):
        # A filesystem gone from the newest sample is resolved; with no sample naming any
        # (none in the raw tier's days) nothing is known of them: incidents stay as they are.
        for check in sorted(still_open - reported):
            signals.append(_signal(server, check, "ok", "info", "no longer measured"))
    if signals:
        async with session.begin_nested():
            await incidents.observe(session, signals, now)
    return found


ANOMALIES_SHOWN = 200
FITTED_ON = (
    "the daily peak (p95 of each 24 h's hourly averages) in % of capacity, Theil–Sen line "
    "with its 95 % slope interval as the band; anomalies: hourly averages outside the "
    "median ± k·MAD of the same hour of week (of day under three weeks), trend removed"
)


def _crossing_out(c: forecast.Crossing, now: datetime) -> CrossingOut:
    days = (c.at - now) / timedelta(days=1) if c.at is not None else None
    return CrossingOut(
        level=c.level,
        status=c.status,
        at=c.at,
        earliest=c.earliest,
        latest=c.latest,
        in_days=round(days, 2) if days is not None else None,
    )


def _forecast_out(r: Report, now: datetime) -> ForecastOut:
    f = r.forecast
    band = (
        (f.slope_low, f.slope_high)
        if f.slope_low is not None and f.slope_high is not None
        else None
    )
    return ForecastOut(
        resource=r.resource.kind,
        mountpoint=r.resource.mountpoint,
        check=PREFIX + r.resource.check,
        state=r.state,
        severity=r.severity,
        summary=r.summary,
        current_percent=f.current,
        peak_percent=f.peak,
        slope_per_day=f.slope_per_day,
        slope_band=band,
        days_fitted=f.days,
        fitted_percent=f.fitted,
        thresholds=[_crossing_out(c, now) for c in f.crossings],
    )


async def capacity_out(
    session: AsyncSession,
    server: Server,
    settings: Settings,
    now: datetime,
    window_days: float | None = None,
) -> CapacityOut:
    """``GET /servers/{id}/capacity``: forecasts per resource and the window's anomalies."""
    kept = settings.metrics_hourly_retention_days
    if window_days is not None and window_days > kept:
        raise InvalidInput(
            f"hourly rollups are kept {kept:g} days (MAILFLEET_METRICS_HOURLY_RETENTION_DAYS)",
            field="query.window_days",
        )
    found = await reports(session, server, settings, now, window_days=window_days)
    spotted = sorted(
        (
            AnomalyOut(
                resource=r.resource.kind,
                mountpoint=r.resource.mountpoint,
                at=a.at,
                value_percent=a.value,
                baseline_percent=a.baseline,
                allowed=a.allowed,
                reason=a.reason,
            )
            for r in found
            for a in r.anomalies
        ),
        key=lambda a: a.at,
        reverse=True,
    )
    return CapacityOut(
        server_id=server.id,
        computed_at=now,
        window_days=window_days or settings.forecast_window_days,
        warning_days=settings.forecast_warning_days,
        fitted_on=FITTED_ON,
        baselines={PREFIX + r.resource.check: r.baseline for r in found},
        forecasts=[_forecast_out(r, now) for r in found],
        anomalies=spotted[:ANOMALIES_SHOWN],
        anomalies_total=len(spotted),
    )
