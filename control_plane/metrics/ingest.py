"""Writing agent samples: batches from every stream of this replica share one transaction.

Each sample is inserted with ON CONFLICT DO NOTHING on (server, time); only rows that were
really new feed the rollups (every series of ``series.py``, by the minute and by the hour),
so a re-sent batch changes nothing. An agent's batch is acknowledged only after the
transaction holding it commits.

A sample that cannot be stored — older than raw retention (a long-offline agent's spool),
or on PostgreSQL for a day without a partition (a clock far ahead) — is acknowledged but
not stored: counted and logged once per batch, so it never fails the batch nor comes back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.base import utcnow
from control_plane.db.engine import Database
from control_plane.db.writes import insert_for
from control_plane.metrics import partitions
from control_plane.metrics.aggregate import Aggregate
from control_plane.metrics.models import MetricRollup, MetricRollupHourly, MetricSample
from control_plane.metrics.series import sample_series
from control_plane.waiting import woken

log = logging.getLogger(__name__)
RAW_RETENTION = timedelta(days=14)  # the setting's default (metrics_raw_retention_days)


@dataclass
class _Pending:
    rows: list[dict[str, Any]]
    since: float = field(default_factory=time.monotonic)
    done: asyncio.Future[int] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


def minute(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


def hour(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


def rollup_rows(
    samples: Iterable[dict[str, Any]], bucket_of: Callable[[datetime], datetime] = minute
) -> list[dict[str, Any]]:
    """count/sum/min/max per (server, series, bucket) for the given new samples."""
    groups: dict[tuple[Any, Any, str, datetime], Aggregate] = {}
    for sample in samples:
        bucket = bucket_of(sample["sampled_at"])
        for metric, value in sample_series(sample).items():
            key = (sample["server_id"], sample["tenant_id"], metric, bucket)
            if key in groups:
                groups[key].merge(Aggregate.of(value))
            else:
                groups[key] = Aggregate.of(value)
    return [
        {
            "server_id": server_id,
            "tenant_id": tenant_id,
            "metric": metric,
            "bucket": bucket,
            "count": agg.count,
            "sum": agg.sum,
            "min": agg.min,
            "max": agg.max,
        }
        for (server_id, tenant_id, metric, bucket), agg in groups.items()
    ]


async def _merge(
    session: AsyncSession, model: type[MetricRollup | MetricRollupHourly], rows: list[Any]
) -> None:
    """Upsert rollup rows, merging into what a bucket already holds."""
    if not rows:
        return
    postgres = session.get_bind().dialect.name == "postgresql"
    least, greatest = (func.least, func.greatest) if postgres else (func.min, func.max)
    upsert = insert_for(session, model)
    upsert = upsert.on_conflict_do_update(
        index_elements=["server_id", "metric", "bucket"],
        set_={
            "count": model.count + upsert.excluded.count,
            "sum": model.sum + upsert.excluded.sum,
            "min": least(model.min, upsert.excluded.min),
            "max": greatest(model.max, upsert.excluded.max),
        },
    )
    # Batches of at most a few thousand rows: one statement each keeps parameters bounded.
    for start in range(0, len(rows), 2000):
        await session.execute(upsert, rows[start : start + 2000])


async def storable(
    session: AsyncSession, rows: list[dict[str, Any]], raw_retention: timedelta, now: datetime
) -> tuple[list[dict[str, Any]], int]:
    """(the rows that can be stored, how many cannot)."""
    oldest = now - raw_retention
    keep = [r for r in rows if r["sampled_at"] >= oldest]
    if keep and session.get_bind().dialect.name == "postgresql":
        days = await partitions.storable_days(session)
        keep = [r for r in keep if r["sampled_at"].date() in days]
    return keep, len(rows) - len(keep)


async def store_batch(
    session: AsyncSession,
    rows: list[dict[str, Any]],
    raw_retention: timedelta = RAW_RETENTION,
    now: datetime | None = None,
) -> tuple[int, int]:
    """Insert samples and fold the new ones into the rollups: (new, not storable)."""
    if not rows:
        return 0, 0
    rows, skipped = await storable(session, rows, raw_retention, now or utcnow())
    if skipped:
        log.warning(
            "%d metric samples acknowledged but not stored: older than raw retention (%s) "
            "or on a day without a partition",
            skipped,
            raw_retention,
        )
    if not rows:
        return 0, skipped
    stmt = (
        insert_for(session, MetricSample)
        .on_conflict_do_nothing(index_elements=["server_id", "sampled_at"])
        .returning(MetricSample.server_id, MetricSample.sampled_at)
    )
    inserted = {(r.server_id, r.sampled_at) for r in (await session.execute(stmt, rows)).all()}
    new = [r for r in rows if (r["server_id"], r["sampled_at"]) in inserted]
    await _merge(session, MetricRollup, rollup_rows(new, minute))
    await _merge(session, MetricRollupHourly, rollup_rows(new, hour))
    return len(new), skipped


async def store_samples(
    session: AsyncSession,
    rows: list[dict[str, Any]],
    raw_retention: timedelta = RAW_RETENTION,
    now: datetime | None = None,
) -> int:
    """``store_batch`` when only the number of new samples matters."""
    return (await store_batch(session, rows, raw_retention, now))[0]


class MetricIngest:
    """Collects rows from many streams and commits them together every ``interval``."""

    def __init__(
        self,
        db: Database,
        interval: float = 0.2,
        max_rows: int = 5000,
        raw_retention: timedelta = RAW_RETENTION,
    ) -> None:
        self.db, self.interval, self.max_rows = db, interval, max_rows
        self.raw_retention = raw_retention
        self.samples_skipped = 0
        self._pending: list[_Pending] = []
        self._rows = 0
        self._wake = asyncio.Event()
        self.samples_ingested = 0

    @property
    def pending_rows(self) -> int:
        return self._rows

    def lag_seconds(self) -> float:
        """How long the oldest rows not yet committed have waited (0: none wait)."""
        return time.monotonic() - self._pending[0].since if self._pending else 0.0

    async def submit(self, rows: list[dict[str, Any]]) -> int:
        """Queue rows; returns (after commit) how many of them were new."""
        pending = _Pending(rows)
        self._pending.append(pending)
        self._rows += len(rows)
        if self._rows >= self.max_rows:
            self._wake.set()
        return await pending.done

    async def run(self) -> None:
        while True:
            await woken(self._wake, self.interval)
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        batch, self._pending, self._rows = self._pending, [], 0
        if not batch:
            return
        rows = [row for pending in batch for row in pending.rows]
        try:
            async with self.db.session() as session:
                _, skipped = await store_batch(session, rows, self.raw_retention)
        except Exception as exc:
            log.exception("storing %d metric samples failed; agents will re-send", len(rows))
            for pending in batch:
                if not pending.done.done():
                    pending.done.set_exception(exc)
            return
        self.samples_ingested += len(rows)
        self.samples_skipped += skipped
        for pending in batch:
            if not pending.done.done():
                pending.done.set_result(len(pending.rows))
