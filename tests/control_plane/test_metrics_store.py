"""Storing samples: duplicates add nothing, rollups count only new rows, late ones skip."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import func, select

from agent.daemon import sample_to_proto
from agent.metrics import Sampler
from control_plane.db.engine import Database
from control_plane.gateway.translate import sample_rows
from control_plane.metrics.ingest import store_batch, store_samples
from control_plane.metrics.models import MetricRollup, MetricSample
from control_plane.metrics.service import raw_samples, rolled_up
from control_plane.servers.models import Server
from control_plane.tenants.models import Tenant
from mailfleet.agent.v1 import agent_pb2


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


async def test_samples_past_raw_retention_are_acknowledged_not_stored(db: Database) -> None:
    """A long-offline agent's spool: what raw retention already dropped is not stored again
    (nor rolled up), and the batch still succeeds. Retention itself: test_metrics_tiers."""
    tenant_id, server_id = await a_server(db)
    now = datetime.now(UTC).replace(microsecond=0)
    rows = [
        row(tenant_id, server_id, now - timedelta(days=100), 1.0),
        row(tenant_id, server_id, now - timedelta(days=20), 2.0),
        row(tenant_id, server_id, now - timedelta(hours=1), 3.0),
    ]
    async with db.session() as session:
        assert await store_batch(session, rows) == (1, 2)
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
    assert (raw, rollup_minutes) == (1, 1)


async def test_filesystem_inodes_are_stored_with_each_sample(db: Database) -> None:
    tenant_id, server_id = await a_server(db)
    at = datetime(2026, 11, 28, 13, 0, tzinfo=UTC)
    stamp = Timestamp()
    stamp.FromDatetime(at)
    disks = [
        agent_pb2.FilesystemUsage(
            mountpoint="/", device="/dev/vda1", fstype="ext4", total_bytes=100, used_bytes=40,
            free_bytes=60, inodes_total=1000, inodes_used=250,
        ),
        # An agent from before inodes (or btrfs, which has no inode table): zeros.
        agent_pb2.FilesystemUsage(mountpoint="/srv", device="/dev/vdb", fstype="btrfs"),
    ]  # fmt: skip
    batch = agent_pb2.MetricBatch(
        sequence=7, samples=[agent_pb2.MetricSample(sampled_at=stamp, filesystems=disks)]
    )
    async with db.session() as session:
        assert await store_samples(session, sample_rows(tenant_id, server_id, batch)) == 1
    async with db.session() as session:
        stored = await raw_samples(session, server_id, at, at + timedelta(seconds=1))
    assert [
        (fs["mountpoint"], fs["inodes_total"], fs["inodes_used"]) for fs in stored[0]["filesystems"]
    ] == [("/", 1000, 250), ("/srv", 0, 0)]


async def test_a_real_sample_keeps_its_inodes_through_the_link(db: Database) -> None:
    tenant_id, server_id = await a_server(db)
    sample = Sampler().sample()
    batch = agent_pb2.MetricBatch(sequence=1, samples=[sample_to_proto(sample)])
    async with db.session() as session:
        await store_samples(session, sample_rows(tenant_id, server_id, batch))
        at = datetime.fromtimestamp(sample.timestamp, UTC)
        stored = await raw_samples(
            session, server_id, at - timedelta(seconds=1), at + timedelta(seconds=1)
        )
    sent = {fs.mountpoint: (fs.inodes_total, fs.inodes_used) for fs in sample.filesystems}
    kept = {
        fs["mountpoint"]: (fs["inodes_total"], fs["inodes_used"]) for fs in stored[0]["filesystems"]
    }
    assert kept == sent
