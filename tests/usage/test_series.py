"""read_series: each step from its tier, merged into UTC-aligned buckets; the summary math on
a known shape; refusals naming the field."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from pydantic_core import to_json
from scipy.stats import theilslopes
from sqlalchemy import insert

from control_plane.db.base import utcnow
from control_plane.db.engine import Database
from control_plane.errors import InvalidInput
from control_plane.metrics.models import MetricRollup, MetricRollupHourly, MetricSample
from control_plane.servers.models import Server
from control_plane.settings import Settings
from control_plane.tenants.models import Tenant
from control_plane.usage.series import Point, Series, TierReach, read_series
from control_plane.usage.service import Usage
from control_plane.usage.summary import summarize
from control_plane.usage.trend import TheilSen, theil_sen

REACH = TierReach.of(Settings())


async def a_server(db: Database) -> tuple[uuid.UUID, uuid.UUID]:
    async with db.session() as session:
        tenant = Tenant(name=f"u-{uuid.uuid4()}")
        session.add(tenant)
        await session.flush()
        server = Server(tenant_id=tenant.id, name="u", provider="manual")
        session.add(server)
        await session.flush()
        return tenant.id, server.id


def sample(tenant_id: uuid.UUID, server_id: uuid.UUID, at: datetime, n: int) -> dict[str, Any]:
    fs = [{"mountpoint": "/", "used_bytes": 100 + n, "total_bytes": 1000, "free_bytes": 900,
           "inodes_used": 10, "inodes_total": 100}]  # fmt: skip
    return {
        "server_id": server_id, "tenant_id": tenant_id, "sampled_at": at, "batch_sequence": n,
        "cpu_percent": 1.0, "load1": 0.5, "load5": 0.4, "load15": 0.3,
        "memory_total_bytes": 1000, "memory_used_bytes": 400, "memory_available_bytes": 500,
        "swap_total_bytes": 0, "swap_used_bytes": 0, "disk_read_bytes": 0,
        "disk_write_bytes": 0, "net_rx_bytes": 0, "net_tx_bytes": 0, "process_count": 7,
        "filesystems": json.dumps(fs), "net_rx_bytes_per_second": float(n),
        "net_tx_bytes_per_second": None, "disk_read_bytes_per_second": None,
        "disk_write_bytes_per_second": None, "mail_queue_messages": None,
    }  # fmt: skip


def rollup(
    tenant_id: uuid.UUID, server_id: uuid.UUID, metric: str, at: datetime, value: float
) -> dict[str, Any]:
    """Four samples around ``value`` (avg = value, min = value - 1, max = value + 1)."""
    return {"server_id": server_id, "tenant_id": tenant_id, "metric": metric, "bucket": at,
            "count": 4, "sum": 4 * value, "min": value - 1, "max": value + 1}  # fmt: skip


async def test_each_step_reads_its_tier_and_merges_buckets(db: Database) -> None:
    tenant_id, server_id = await a_server(db)
    now = utcnow()
    hour = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    # Raw: cpu 1 (and a filesystem, a rate); 1-minute tier: cpu 2; hourly tier: cpu 3 — so
    # each answer shows where it came from.
    raw = [sample(tenant_id, server_id, hour + timedelta(seconds=15 * n), n) for n in range(8)]
    minutes = [
        rollup(tenant_id, server_id, m, hour + timedelta(minutes=n), 2.0 + n)
        for n in range(30)
        for m in ("cpu_percent", "fs_used_bytes:/")
    ]
    day = hour.replace(hour=0) - timedelta(days=2)
    hours = [
        rollup(tenant_id, server_id, "cpu_percent", day + timedelta(hours=n), 3.0 + n % 24)
        for n in range(48)
    ]
    async with db.session() as session:
        await session.execute(insert(MetricSample), raw)
        await session.execute(insert(MetricRollup), minutes)
        await session.execute(insert(MetricRollupHourly), hours)
    async with db.session() as session:
        got = await read_series(
            session, server_id, hour, hour + timedelta(hours=1), "raw", reach=REACH
        )
        assert [p.avg for p in got["cpu_percent"]] == [1.0] * 8
        assert [p.t for p in got["cpu_percent"]] == [r["sampled_at"] for r in raw]
        assert [p.avg for p in got["fs_used_bytes:/"]] == [100.0 + n for n in range(8)]
        assert got["net_rx_bytes_per_second"][3] == Point(raw[3]["sampled_at"], 3, 3, 3, 1)
        assert "mail_queue_messages" not in got  # not reported: absent, not zero

        end = hour + timedelta(hours=1)
        one = await read_series(session, server_id, hour, end, "1m", ["cpu_percent"], reach=REACH)
        assert list(one) == ["cpu_percent"]
        assert one["cpu_percent"][5] == Point(hour + timedelta(minutes=5), 7.0, 6.0, 8.0, 4)
        five = await read_series(session, server_id, hour, end, "5m", reach=REACH)
        assert set(five) == {"cpu_percent", "fs_used_bytes:/"}
        # minutes 0..4 hold avgs 2..6: merged avg 4, min 1, max 7, count 20
        assert five["cpu_percent"][0] == Point(hour, 4.0, 1.0, 7.0, 20)
        assert len(five["cpu_percent"]) == 6
        fifteen = await read_series(
            session, server_id, hour, end, "15m", ["cpu_percent"], reach=REACH
        )
        assert fifteen["cpu_percent"][1] == Point(hour + timedelta(minutes=15), 24.0, 16, 32, 60)

        span = (day, day + timedelta(days=2))
        hourly = await read_series(session, server_id, *span, "1h", reach=REACH)
        assert len(hourly["cpu_percent"]) == 48
        assert hourly["cpu_percent"][25] == Point(day + timedelta(hours=25), 4.0, 3.0, 5.0, 4)
        daily = await read_series(session, server_id, *span, "1d", reach=REACH)
        # each UTC day: avgs 3..26 → 14.5; min 2, max 27, 24 × 4 samples
        expected = [Point(day + timedelta(days=d), 14.5, 2.0, 27.0, 96) for d in range(2)]
        assert daily["cpu_percent"] == expected
        assert await read_series(session, server_id, *span, "1d", [], reach=REACH) == {}

        refusals = [
            ("raw", now - timedelta(days=15), "query.step"),  # raw keeps 14 days
            ("1m", now - timedelta(days=8), "query.step"),  # 11,520 points > 11,000
            ("5m", now - timedelta(days=91), "query.step"),  # 1-minute tier keeps 90 days
            ("1d", now - timedelta(days=800), "query.from"),  # nothing keeps longer
            ("1h", now + timedelta(hours=1), "query.from"),  # from after to
        ]
        for step, start, field in refusals:
            with pytest.raises(InvalidInput) as refused:
                await read_series(session, server_id, start, now, step, reach=REACH)  # type: ignore[arg-type]
            assert refused.value.field == field, (step, refused.value.detail)


def test_summary_of_a_known_shape() -> None:
    """Hourly points over 28 days: a daily cycle peaking at 14:00 UTC, Wednesdays 10 higher,
    a trend of 0.5/day; then three spikes, which the trend must not follow."""
    start = datetime(2026, 10, 5, tzinfo=UTC)  # a Monday
    points = []
    for n in range(28 * 24):
        t = start + timedelta(hours=n)
        value = 50 + 10 * np.cos(2 * np.pi * (t.hour - 14) / 24) + 0.5 * n / 24
        value += 10 if t.weekday() == 2 else 0
        points.append(Point(t, float(value), float(value) - 1, float(value) + 2, 60))
    summary = summarize(Series.of_points(points), 3600)
    avgs = [p.avg for p in points]
    assert summary.average == pytest.approx(float(np.mean(avgs)))
    assert summary.p95 == pytest.approx(float(np.percentile(avgs, 95)))
    assert summary.max == max(avgs) + 2
    assert summary.peak_hour == 14
    assert summary.peak_weekday == 2
    assert summary.trend_per_day == pytest.approx(0.5, abs=0.05)
    spiked = [
        Point(p.t, p.avg + 400, p.min, p.max + 400, p.count) if n in (100, 300, 500) else p
        for n, p in enumerate(points)
    ]
    assert summarize(Series.of_points(spiked), 3600).trend_per_day == pytest.approx(0.5, abs=0.05)
    # daily points: no hour of day; nothing at all: unknown, never zero
    daily = summarize(Series.of_points(points[::24]), 86_400)
    assert daily.peak_hour is None and daily.peak_weekday is not None
    none = Series.of_points([])
    assert summarize(none, 3600).average is None and summarize(none, None).trend_per_day is None
    under_a_day = Series.of_points(points[:12])
    assert summarize(under_a_day, 3600).trend_per_day is None


def test_theil_sen_is_scipys_slope_with_its_interval_on_request() -> None:
    """The one fit usage and capacity share: scipy's slope (unordered x, ties left out)."""
    rng = np.random.default_rng(7)
    x = rng.permutation(np.repeat(np.arange(20.0), 2))
    y = 0.3 * x + rng.normal(0, 1, x.size)
    scipy_fit = theilslopes(y, x, alpha=0.9)
    assert theil_sen(x, y) == TheilSen(pytest.approx(scipy_fit.slope))  # type: ignore[arg-type]
    banded = theil_sen(x, y, 0.9)
    assert (banded.low, banded.slope, banded.high) == pytest.approx(
        (scipy_fit.low_slope, scipy_fit.slope, scipy_fit.high_slope)
    )


def test_usage_json_is_pydantic_cores_serialization_of_the_document() -> None:
    """The route's body, joined from columns, is byte for byte ``to_json(document())``:
    floats in every notation, times with and without a fraction, an empty answer."""
    start = datetime(2026, 10, 5, tzinfo=UTC)
    times = [start + timedelta(seconds=n * 3600, microseconds=n * 7) for n in range(5)]
    values = [1e16, 1.5e-7, 50.0, -0.0, 123456.789]
    series = {
        "cpu_percent": Series.of_points(
            [Point(t, v, v, v + 1, 1) for t, v in zip(times, values, strict=True)]
        ),
        "fs_used_bytes:/var": Series.of_points([Point(times[0], 3.0, 2.0, 4.0, 60)]),
        "unknown_gauge": Series.of_points([Point(times[1], 1.0, 1.0, 1.0, 1)]),
    }
    for usage in (
        Usage(uuid.uuid4(), start, times[-1], "raw", series),
        Usage(uuid.uuid4(), start, times[-1], "1h", {}),
    ):
        assert usage.json() == to_json(usage.document())
        assert json.loads(usage.json(indent=2)) == json.loads(usage.json())
