"""Reading a server's metrics back: raw samples or rollups at a chosen step."""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.errors import InvalidInput
from control_plane.metrics.aggregate import Aggregate
from control_plane.metrics.models import MetricRollup, MetricSample
from control_plane.metrics.series import GAUGES

Step = Literal["raw", "1m", "5m", "15m", "1h"]
STEPS: dict[str, timedelta] = {
    "1m": timedelta(minutes=1),
    "5m": timedelta(minutes=5),
    "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1),
}
MAX_RAW_SAMPLES = 10_000
SAMPLE_FIELDS = (
    *GAUGES,
    "disk_read_bytes",
    "disk_write_bytes",
    "net_rx_bytes",
    "net_tx_bytes",
)


def _floor(at: datetime, step: timedelta) -> datetime:
    seconds = int(step.total_seconds())
    epoch = int(at.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, tz=at.tzinfo)


async def raw_samples(
    session: AsyncSession, server_id: uuid.UUID, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    rows = (
        await session.scalars(
            select(MetricSample)
            .where(
                MetricSample.server_id == server_id,
                MetricSample.sampled_at >= start,
                MetricSample.sampled_at < end,
            )
            .order_by(MetricSample.sampled_at)
            .limit(MAX_RAW_SAMPLES + 1)
        )
    ).all()
    if len(rows) > MAX_RAW_SAMPLES:
        raise InvalidInput(
            f"more than {MAX_RAW_SAMPLES} raw samples in range: narrow it or use a step",
            field="query.from",
        )
    return [
        {
            "t": row.sampled_at,
            "batch_sequence": row.batch_sequence,
            **{name: getattr(row, name) for name in SAMPLE_FIELDS},
            "filesystems": json.loads(row.filesystems),
        }
        for row in rows
    ]


async def rolled_up(
    session: AsyncSession, server_id: uuid.UUID, start: datetime, end: datetime, step: str
) -> dict[str, list[dict[str, Any]]]:
    """avg/min/max/count per metric per step, built from the 1-minute rollups."""
    width = STEPS[step]
    rows = (
        await session.scalars(
            select(MetricRollup)
            .where(
                MetricRollup.server_id == server_id,
                MetricRollup.bucket >= _floor(start, timedelta(minutes=1)),
                MetricRollup.bucket < end,
            )
            .order_by(MetricRollup.metric, MetricRollup.bucket)
        )
    ).all()
    merged: dict[str, dict[datetime, Aggregate]] = defaultdict(dict)
    for row in rows:
        bucket = _floor(row.bucket, width)
        value = Aggregate(row.count, row.sum, row.min, row.max)
        if bucket in merged[row.metric]:
            merged[row.metric][bucket].merge(value)
        else:
            merged[row.metric][bucket] = value
    return {
        metric: [
            {"t": t, "avg": agg.avg, "min": agg.min, "max": agg.max, "count": agg.count}
            for t, agg in sorted(buckets.items())
        ]
        for metric, buckets in merged.items()
    }
