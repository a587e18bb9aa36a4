"""Writing agent samples: batches from every stream of this replica share one transaction.

Each sample is inserted with ON CONFLICT DO NOTHING on (server, time); only rows that were
really new feed the 1-minute rollups, so a re-sent batch changes nothing. An agent's batch
is acknowledged only after the transaction holding it commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.engine import Database
from control_plane.metrics.aggregate import Aggregate
from control_plane.metrics.models import ROLLUP_METRICS, MetricRollup, MetricSample

log = logging.getLogger(__name__)


@dataclass
class _Pending:
    rows: list[dict[str, Any]]
    done: asyncio.Future[int] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


def minute(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


def rollup_rows(samples: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """count/sum/min/max per (server, metric, minute) for the given new samples."""
    groups: dict[tuple[Any, Any, str, datetime], Aggregate] = {}
    for sample in samples:
        for metric in ROLLUP_METRICS:
            key = (sample["server_id"], sample["tenant_id"], metric, minute(sample["sampled_at"]))
            value = Aggregate.of(float(sample[metric]))
            if key in groups:
                groups[key].merge(value)
            else:
                groups[key] = value
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


async def store_samples(session: AsyncSession, rows: list[dict[str, Any]]) -> int:
    """Insert samples, fold the new ones into rollups; returns how many were new."""
    if not rows:
        return 0
    postgres = session.get_bind().dialect.name == "postgresql"
    insert = pg_insert if postgres else sqlite_insert
    stmt = (
        insert(MetricSample)
        .on_conflict_do_nothing(index_elements=["server_id", "sampled_at"])
        .returning(MetricSample.server_id, MetricSample.sampled_at)
    )
    inserted = {(r.server_id, r.sampled_at) for r in (await session.execute(stmt, rows)).all()}
    new = [r for r in rows if (r["server_id"], r["sampled_at"]) in inserted]
    rollups = rollup_rows(new)
    if rollups:
        least, greatest = (func.least, func.greatest) if postgres else (func.min, func.max)
        upsert = insert(MetricRollup)
        upsert = upsert.on_conflict_do_update(
            index_elements=["server_id", "metric", "bucket"],
            set_={
                "count": MetricRollup.count + upsert.excluded.count,
                "sum": MetricRollup.sum + upsert.excluded.sum,
                "min": least(MetricRollup.min, upsert.excluded.min),
                "max": greatest(MetricRollup.max, upsert.excluded.max),
            },
        )
        await session.execute(upsert, rollups)
    return len(new)


class MetricIngest:
    """Collects rows from many streams and commits them together every ``interval``."""

    def __init__(self, db: Database, interval: float = 0.2, max_rows: int = 5000) -> None:
        self.db, self.interval, self.max_rows = db, interval, max_rows
        self._pending: list[_Pending] = []
        self._rows = 0
        self._wake = asyncio.Event()
        self.samples_ingested = 0

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
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        batch, self._pending, self._rows = self._pending, [], 0
        if not batch:
            return
        rows = [row for pending in batch for row in pending.rows]
        try:
            async with self.db.session() as session:
                await store_samples(session, rows)
        except Exception as exc:
            log.exception("storing %d metric samples failed; agents will re-send", len(rows))
            for pending in batch:
                if not pending.done.done():
                    pending.done.set_exception(exc)
            return
        self.samples_ingested += len(rows)
        for pending in batch:
            if not pending.done.done():
                pending.done.set_result(len(pending.rows))
