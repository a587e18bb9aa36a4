"""Keep raw samples 14 days and 1-minute rollups 90 days (DESIGN: metrics)."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.base import utcnow
from control_plane.db.engine import Database
from control_plane.metrics.models import MetricRollup, MetricSample

log = logging.getLogger(__name__)
RAW_RETENTION = timedelta(days=14)
ROLLUP_RETENTION = timedelta(days=90)


async def prune(session: AsyncSession, now: datetime) -> tuple[int, int]:
    """Delete what is past retention; safe to run on every replica at once."""
    raw = await session.execute(
        delete(MetricSample).where(MetricSample.sampled_at < now - RAW_RETENTION)
    )
    rollups = await session.execute(
        delete(MetricRollup).where(MetricRollup.bucket < now - ROLLUP_RETENTION)
    )
    return raw.rowcount, rollups.rowcount  # type: ignore[attr-defined]


async def prune_forever(db: Database, interval: float = 3600.0) -> None:
    while True:
        try:
            async with db.session() as session:
                raw, rollups = await prune(session, utcnow())
            if raw or rollups:
                log.info("metrics retention: %d raw samples, %d rollups removed", raw, rollups)
        except Exception:
            log.exception("metrics retention failed; retrying later")
        await asyncio.sleep(interval)
