"""Usage tiers: migration 0020 on a database holding data, daily partitions made ahead and
dropped (PostgreSQL), retention on every tier, and ingest rolling up every series."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import sqlalchemy as sa
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import select, text

from control_plane.db import migrate
from control_plane.db.base import UTCDateTime
from control_plane.db.engine import Database
from control_plane.gateway.translate import sample_rows
from control_plane.metrics import partitions
from control_plane.metrics.ingest import MetricIngest
from control_plane.metrics.models import MetricRollup, MetricRollupHourly, MetricSample
from control_plane.metrics.retention import maintain
from control_plane.servers.models import Server
from control_plane.settings import Settings
from control_plane.tenants.models import Tenant
from mailfleet.agent.v1 import agent_pb2
from tests.conftest import BACKENDS, fresh_database_url
from tests.control_plane.test_metrics_store import a_server, row
from tests.support.postgres import drop_database

NOW = datetime.now(UTC).replace(second=0, microsecond=0)
DAY = timedelta(days=1)


@pytest_asyncio.fixture(params=BACKENDS)
async def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    url = await fresh_database_url(request.param, tmp_path)
    database = Database(url)
    yield database
    await database.dispose()
    if request.param == "postgresql":
        await drop_database(url)


OLD_SAMPLES = sa.table(
    "metric_samples",
    *[sa.column(n, sa.Uuid()) for n in ("server_id", "tenant_id")],
    sa.column("sampled_at", UTCDateTime()),
    sa.column("batch_sequence"),
    *[sa.column(n) for n in ("cpu_percent", "load1", "load5", "load15", "process_count")],
    *[
        sa.column(n)
        for n in (
            "memory_total_bytes", "memory_used_bytes", "memory_available_bytes",
            "swap_total_bytes", "swap_used_bytes", "disk_read_bytes", "disk_write_bytes",
            "net_rx_bytes", "net_tx_bytes", "filesystems",
        )
    ],
)  # fmt: skip
OLD_ROLLUPS = sa.table(
    "metric_rollups_1m",
    *[sa.column(n, sa.Uuid()) for n in ("server_id", "tenant_id")],
    *[sa.column(n) for n in ("metric", "count", "sum", "min", "max")],
    sa.column("bucket", UTCDateTime()),
)


async def kept(db: Database, server_id: uuid.UUID) -> tuple[set[datetime], set[tuple[Any, ...]]]:
    """(raw sample times, 1-minute rollup rows) of one server, read without the models."""
    async with db.engine.connect() as conn:
        times = await conn.scalars(
            select(MetricSample.sampled_at).where(MetricSample.server_id == server_id)
        )
        rollups = await conn.execute(
            select(
                MetricRollup.metric,
                MetricRollup.bucket,
                MetricRollup.count,
                MetricRollup.sum,
                MetricRollup.min,
                MetricRollup.max,
            ).where(MetricRollup.server_id == server_id)
        )
        return set(times), {tuple(r) for r in rollups}


async def relkinds(db: Database) -> dict[str, str]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT relname, relkind::text FROM pg_class WHERE relname IN "
                "('metric_samples', 'metric_rollups_1m', 'metric_rollups_1h')"
            )
        )
        return {name: kind for name, kind in rows}


async def children(db: Database, table: str) -> list[str]:
    async with db.engine.connect() as conn:
        names = await conn.scalars(
            text(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = CAST(:t AS regclass) ORDER BY c.relname"
            ),
            {"t": table},
        )
        return list(names)


async def shape(db: Database) -> set[tuple[Any, ...]]:
    """Constraints (with ON DELETE), indexes and policies of the two partitioned tables."""
    async with db.engine.connect() as conn:
        constraints = await conn.execute(
            text(
                "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) "
                "FROM pg_constraint WHERE conrelid IN "
                "('metric_samples'::regclass, 'metric_rollups_1m'::regclass) AND contype <> 'n'"
            )
        )
        indexes = await conn.execute(
            text(
                "SELECT tablename, indexname FROM pg_indexes "
                "WHERE tablename IN ('metric_samples', 'metric_rollups_1m')"
            )
        )
        policies = await conn.execute(
            text(
                "SELECT tablename, policyname, roles::text, qual FROM pg_policies "
                "WHERE tablename IN ('metric_samples', 'metric_rollups_1m')"
            )
        )
        return {*map(tuple, constraints), *map(tuple, indexes), *map(tuple, policies)}


async def test_0020_keeps_data_backfills_hours_and_partitions_by_day(
    empty_db: Database, tmp_path: Path
) -> None:
    """0019 → 0020 → 0019 → 0020 on a database holding samples and rollups; then the
    maintenance pass makes partitions ahead and drops expired ones (PostgreSQL: whole
    partitions, seen in pg_inherits; SQLite: rows), and deleting a server cascades."""
    db = empty_db
    postgres = db.engine.dialect.name == "postgresql"
    await migrate.upgrade(db)
    async with db.session() as session:
        tenant = Tenant(name="tiers")
        session.add(tenant)
        await session.flush()
        server = Server(tenant_id=tenant.id, name="t", provider="manual")
        session.add(server)
        await session.flush()
        tenant_id, server_id = tenant.id, server.id
    await migrate.downgrade(db, "0019")
    before_shape = await shape(db) if postgres else set()

    hour = NOW.replace(minute=0) - 3 * DAY
    old = NOW.replace(hour=0, minute=0) - 40 * DAY  # in the 1-minute tier, not the raw one
    samples = [
        {**row(tenant_id, server_id, hour + timedelta(seconds=s), 1.0), "batch_sequence": 1}
        for s in (0, 30)
    ]
    rollups = [
        ("cpu_percent", hour, 2, 30.0, 10.0, 20.0),
        ("cpu_percent", hour + timedelta(minutes=59), 1, 40.0, 40.0, 40.0),
        ("load1", old, 4, 2.0, 0.5, 0.5),
    ]
    async with db.engine.begin() as conn:
        await conn.execute(OLD_SAMPLES.insert(), samples)
        await conn.execute(
            OLD_ROLLUPS.insert(),
            [
                dict(zip(("metric", "bucket", "count", "sum", "min", "max"), r, strict=True))
                | {"server_id": server_id, "tenant_id": tenant_id}
                for r in rollups
            ],
        )
    expected = ({s["sampled_at"] for s in samples}, set(rollups))
    assert await kept(db, server_id) == expected

    await migrate.upgrade(db, "0020")
    assert await kept(db, server_id) == expected
    async with db.session() as session:
        hourly = (await session.execute(select(MetricRollupHourly))).scalars().all()
    assert {(h.metric, h.bucket, h.count, h.sum, h.min, h.max) for h in hourly} == {
        ("cpu_percent", hour, 3, 70.0, 10.0, 40.0),
        ("load1", old.replace(minute=0), 4, 2.0, 0.5, 0.5),
    }
    if postgres:
        assert await relkinds(db) == {
            "metric_samples": "p", "metric_rollups_1m": "p", "metric_rollups_1h": "r",
        }  # fmt: skip
        minute_days = await children(db, "metric_rollups_1m")
        assert minute_days[0] == partitions.partition_name("metric_rollups_1m", old.date())
        assert minute_days[-1] == partitions.partition_name(
            "metric_rollups_1m", NOW.date() + 7 * DAY
        )
        assert await shape(db) == before_shape  # keys, ON DELETE CASCADE, indexes, policies

    await migrate.downgrade(db, "0019")
    assert await kept(db, server_id) == expected
    if postgres:
        assert await relkinds(db) == {"metric_samples": "r", "metric_rollups_1m": "r"}
        assert await shape(db) == before_shape
    await migrate.upgrade(db)
    assert await kept(db, server_id) == expected

    # Maintenance: 1-minute tier 30 days, raw 2, hourly 35, partitions 3 days ahead.
    tight = Settings(
        home=tmp_path,
        metrics_raw_retention_days=2.0,
        metrics_minute_retention_days=30.0,
        metrics_hourly_retention_days=35.0,
        metrics_partition_ahead_days=3,
    )
    later = NOW + 10 * DAY
    async with db.session() as session:
        pruned = await maintain(session, tight, later)
    times, minutes = await kept(db, server_id)
    assert times == set()  # 13 days old > 2
    assert {m[0] for m in minutes} == {"cpu_percent"}  # the 50-day-old minute went
    async with db.session() as session:
        hours = set(await session.scalars(select(MetricRollupHourly.metric)))
    assert hours == {"cpu_percent"}
    assert pruned.hourly == 1
    if postgres:
        raw = await children(db, "metric_samples")
        assert raw[0] == partitions.partition_name("metric_samples", (later - 2 * DAY).date())
        assert raw[-1] == partitions.partition_name("metric_samples", (later + 3 * DAY).date())
        assert len(raw) == len(set(raw)) == 6
        assert pruned.partitions_made == 2 * 6  # later-2 … later+3, in each table
        # Two replicas at once: both pass, and each partition is made once: raw NOW … NOW+7
        # (dropped as past its retention), both tables' NOW+14 and NOW+15.
        first, last = NOW.date(), (NOW + 15 * DAY).date()
        made = await asyncio.gather(
            *[db.transact(lambda s: partitions.make_ahead(s, first, last)) for _ in range(2)]
        )
        assert sorted(made) == [0, 8 + 2 * 2]
    async with db.session() as session:
        await session.delete(await session.get(Server, server_id))
    assert await kept(db, server_id) == (set(), set())


def a_batch(at: datetime, sequence: int) -> agent_pb2.MetricBatch:
    """Two samples of a MailU VPS with two filesystems, the first an agent's first."""
    samples = []
    for i, queued in enumerate((3, 5)):
        stamp = Timestamp()
        stamp.FromDatetime(at + timedelta(seconds=15 * i))
        sample = agent_pb2.MetricSample(
            sampled_at=stamp,
            cpu_percent=10.0 * (i + 1),
            mail_queue_messages=queued,
            filesystems=[
                agent_pb2.FilesystemUsage(
                    mountpoint="/", total_bytes=1000, used_bytes=400 + i, inodes_total=100,
                    inodes_used=10,
                ),
                agent_pb2.FilesystemUsage(mountpoint="/var/lib/docker/x" * 10, used_bytes=1),
            ],
        )  # fmt: skip
        if i:
            sample.net_rx_bytes_per_second = 2048.0
            sample.disk_write_bytes_per_second = 0.0
        samples.append(sample)
    return agent_pb2.MetricBatch(sequence=sequence, samples=samples)


async def ingest(db: Database, rows: list[dict[str, Any]]) -> tuple[int, int]:
    """Submit ``rows`` as an agent stream does; (acknowledged, skipped)."""
    metrics = MetricIngest(db)
    pending = asyncio.create_task(metrics.submit(rows))
    await asyncio.sleep(0)
    await metrics.flush()
    return await pending, metrics.samples_skipped


async def rollup_snapshot(db: Database, server_id: uuid.UUID) -> dict[str, set[tuple[Any, ...]]]:
    models: tuple[type[MetricRollup] | type[MetricRollupHourly], ...] = (
        MetricRollup,
        MetricRollupHourly,
    )
    async with db.session() as session:
        return {
            model.__tablename__: {
                tuple(r)
                for r in await session.execute(
                    select(
                        model.metric, model.bucket, model.count, model.sum, model.min, model.max
                    ).where(model.server_id == server_id)
                )
            }
            for model in models
        }


async def test_ingest_rolls_up_every_series_and_skips_what_cannot_be_stored(
    db: Database,
) -> None:
    tenant_id, server_id = await a_server(db)
    at = NOW - timedelta(hours=2)
    rows = sample_rows(tenant_id, server_id, a_batch(at, 1))
    assert rows[0]["net_rx_bytes_per_second"] is None  # first sample: no rate
    assert (rows[1]["net_rx_bytes_per_second"], rows[1]["mail_queue_messages"]) == (2048.0, 5)
    late = {**rows[0], "sampled_at": NOW - 15 * DAY}  # past raw retention
    ahead = {**rows[0], "sampled_at": NOW + 30 * DAY}  # past the partitions made ahead
    postgres = db.engine.dialect.name == "postgresql"
    sent = [*rows, late, *([ahead] if postgres else [])]  # SQLite has no partitions
    assert await ingest(db, sent) == (len(sent), 2 if postgres else 1)

    series = await rollup_snapshot(db, server_id)
    long_fs = "/var/lib/docker/x" * 10
    by_metric = {r[0]: r for r in series["metric_rollups_1m"]}
    assert by_metric["mail_queue_messages"][2:] == (2, 8.0, 3.0, 5.0)
    assert by_metric["net_rx_bytes_per_second"][2:] == (1, 2048.0, 2048.0, 2048.0)
    assert by_metric["disk_write_bytes_per_second"][2:] == (1, 0.0, 0.0, 0.0)
    assert by_metric["fs_used_bytes:/"][2:] == (2, 801.0, 400.0, 401.0)
    assert by_metric["fs_inodes_used:/"][2:] == (2, 20.0, 10.0, 10.0)
    assert by_metric[f"fs_used_bytes:{long_fs}"][2:] == (1 + 1, 2.0, 1.0, 1.0)
    assert "net_tx_bytes_per_second" not in by_metric  # never sent: no series, not zeros
    hourly = {r[0]: r for r in series["metric_rollups_1h"]}
    assert set(hourly) == set(by_metric)
    assert {m: r[2:] for m, r in hourly.items()} == {m: r[2:] for m, r in by_metric.items()}
    assert hourly["cpu_percent"][1] == at.replace(minute=0)
    # A re-sent batch, and one an older agent spooled (no rates, no queue): nothing changes
    # for the first; the second adds samples without those series.
    assert await ingest(db, rows) == (2, 0)
    assert await rollup_snapshot(db, server_id) == series
    old_agent = a_batch(at + timedelta(minutes=1), 2)
    for sample in old_agent.samples:
        for name in ("mail_queue_messages", "net_rx_bytes_per_second"):
            sample.ClearField(name)
    spooled = agent_pb2.MetricBatch.FromString(old_agent.SerializeToString())
    assert await ingest(db, sample_rows(tenant_id, server_id, spooled)) == (2, 0)
    async with db.session() as session:
        stored = await session.scalars(
            select(MetricSample.mail_queue_messages).where(MetricSample.server_id == server_id)
        )
        assert sorted(stored, key=json.dumps) == [3, 5, None, None]
