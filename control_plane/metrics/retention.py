"""Keep raw samples 14 days, 1-minute rollups 90 days and hourly rollups 2 years (settings).

On PostgreSQL raw samples and 1-minute rollups go a whole day's partition at a time
(``partitions.py``), and partitions are made ahead in the same pass; SQLite deletes rows.
Hourly rollups are a plain table on both and are deleted. Every replica runs the pass
(throttled to ``metrics_maintenance_seconds``); it is idempotent.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.base import utcnow
from control_plane.metrics import partitions
from control_plane.metrics.models import MetricRollup, MetricRollupHourly, MetricSample
from control_plane.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Retention:
    raw: timedelta = timedelta(days=14)
    minute: timedelta = timedelta(days=90)
    hourly: timedelta = timedelta(days=730)

    @classmethod
    def of(cls, settings: Settings) -> Retention:
        return cls(
            raw=timedelta(days=settings.metrics_raw_retention_days),
            minute=timedelta(days=settings.metrics_minute_retention_days),
            hourly=timedelta(days=settings.metrics_hourly_retention_days),
        )

    def of_tier(self, tier: str) -> timedelta:
        """How far back a tier (``raw``, ``1m``, ``1h``) holds data."""
        return {"raw": self.raw, "1m": self.minute, "1h": self.hourly}[tier]


@dataclass
class Pruned:
    raw: int = 0  # rows on SQLite, partitions on PostgreSQL
    minute: int = 0  # likewise
    hourly: int = 0  # rows
    partitions_made: int = 0

    def total(self) -> int:
        return self.raw + self.minute + self.hourly + self.partitions_made


async def prune(
    session: AsyncSession, now: datetime, retention: Retention = Retention()
) -> tuple[int, int]:
    """Drop what is past retention (raw, 1-minute); safe to run on every replica at once."""
    pruned = await _prune(session, now, retention)
    return pruned.raw, pruned.minute


async def _prune(session: AsyncSession, now: datetime, retention: Retention) -> Pruned:
    pruned = Pruned()
    if session.get_bind().dialect.name == "postgresql":
        pruned.raw = await partitions.drop_before(session, "metric_samples", now - retention.raw)
        pruned.minute = await partitions.drop_before(
            session, "metric_rollups_1m", now - retention.minute
        )
    else:
        raw = await session.execute(
            delete(MetricSample).where(MetricSample.sampled_at < now - retention.raw)
        )
        minute = await session.execute(
            delete(MetricRollup).where(MetricRollup.bucket < now - retention.minute)
        )
        pruned.raw, pruned.minute = raw.rowcount, minute.rowcount  # type: ignore[attr-defined]
    hourly = await session.execute(
        delete(MetricRollupHourly).where(MetricRollupHourly.bucket < now - retention.hourly)
    )
    pruned.hourly = hourly.rowcount  # type: ignore[attr-defined]
    return pruned


async def maintain(session: AsyncSession, settings: Settings, now: datetime) -> Pruned:
    """One pass: partitions ahead (PostgreSQL), then retention on every tier."""
    made = 0
    retention = Retention.of(settings)
    if session.get_bind().dialect.name == "postgresql":
        ahead = timedelta(days=settings.metrics_partition_ahead_days)
        made = await partitions.make_ahead(
            session, (now - retention.raw).date(), (now + ahead).date()
        )
    pruned = await _prune(session, now, retention)
    pruned.partitions_made = made
    if pruned.total():
        log.info(
            "metrics maintenance: %d partitions made; removed raw %d, 1-minute %d "
            "(partitions on PostgreSQL, rows on SQLite), hourly %d rows",
            made,
            pruned.raw,
            pruned.minute,
            pruned.hourly,
        )
    return pruned


class MaintenanceJob:
    """A ``periodic.Job`` run: ``maintain`` at most every ``metrics_maintenance_seconds``.

    ``ran`` says the pass already ran (serve runs one before agents connect), so the first
    periodic round does not repeat it.
    """

    def __init__(self, settings: Settings, ran: bool = False) -> None:
        self.settings = settings
        self._last: float | None = time.monotonic() if ran else None

    async def __call__(self, session: AsyncSession) -> int:
        now = time.monotonic()
        if self._last is not None and now - self._last < self.settings.metrics_maintenance_seconds:
            return 0
        done = (await maintain(session, self.settings, utcnow())).total()
        self._last = now
        return done
