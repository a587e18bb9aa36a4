"""Storing samples: duplicates add nothing, rollups count only new rows, retention prunes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from control_plane.db.engine import Database
from control_plane.metrics.ingest import store_samples
from control_plane.metrics.models import MetricRollup, MetricSample
from control_plane.metrics.retention import prune
from control_plane.metrics.service import rolled_up
from control_plane.servers.models import Server
from control_plane.tenants.models import Tenant


async def a_server(db: Database) -> tuple[uuid.UUID, uuid.UUID]:
    async with db.session() as session:
        tenant = Tenant(name=f"m-{uuid.uuid4()}")
        session.add(tenant)
        await session.flush()
        server = Server(tenant_id=tenant.id, name="m", provider="manual")
        session.add(server)
        await session.flush()
        return tenant.id, server.id


def row(tenant_id: uuid.UUID, server_id: uuid.UUID, at: datetime, cpu: float) -> dict[str, Any]:
    return {
        "server_id": server_id,
        "tenant_id": tenant_id,
        "sampled_at": at,
        "batch_sequence": 1,
        "cpu_percent": cpu,
        "load1": 0.0,
        "load5": 0.0,
        "load15": 0.0,
        "memory_total_bytes": 100,
        "memory_used_bytes": 50,
        "memory_available_bytes": 50,
        "swap_total_bytes": 0,
        "swap_used_bytes": 0,
        "disk_read_bytes": 0,
        "disk_write_bytes": 0,
        "net_rx_bytes": 0,
        "net_tx_bytes": 0,
        "process_count": 1,
        "filesystems": "[]",
    }


async def test_resent_samples_do_not_count_twice(db: Database) -> None:
    tenant_id, server_id = await a_server(db)
    minute = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    first = [row(tenant_id, server_id, minute + timedelta(seconds=s), s) for s in (0, 15, 30)]
    async with db.session() as session:
        assert await store_samples(session, first) == 3
    again = [*first, row(tenant_id, server_id, minute + timedelta(seconds=45), 90.0)]
    async with db.session() as session:
        assert await store_samples(session, again) == 1
        series = await rolled_up(session, server_id, minute, minute + timedelta(minutes=1), "1m")
    cpu = series["cpu_percent"][0]
    assert (cpu["count"], cpu["min"], cpu["max"]) == (4, 0.0, 90.0)
    assert cpu["avg"] == (0 + 15 + 30 + 90) / 4


async def test_retention_drops_only_what_is_old(db: Database) -> None:
    tenant_id, server_id = await a_server(db)
    now = datetime.now(UTC).replace(microsecond=0)
    rows = [
        row(tenant_id, server_id, now - timedelta(days=100), 1.0),
        row(tenant_id, server_id, now - timedelta(days=20), 2.0),
        row(tenant_id, server_id, now - timedelta(hours=1), 3.0),
    ]
    async with db.session() as session:
        await store_samples(session, rows)
    async with db.session() as session:
        await prune(session, now)
    async with db.session() as session:
        raw = await session.scalar(
            select(func.count())
            .select_from(MetricSample)
            .where(MetricSample.server_id == server_id)
        )
        rollup_minutes = await session.scalar(
            select(func.count(func.distinct(MetricRollup.bucket))).where(
                MetricRollup.server_id == server_id
            )
        )
    assert raw == 1  # only the last hour's sample is within 14 days
    assert rollup_minutes == 2  # 20 days and 1 hour old are within 90 days
