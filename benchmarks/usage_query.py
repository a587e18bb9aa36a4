"""A 90-day usage query at 1-hour step for one server, against PostgreSQL holding two years of
hourly rollups for H servers and 90 days of 1-minute rollups for M servers (issue 16: H =
1,000, M = 100; target p99 ≤ 50 ms), at each size given, to show how it grows.

Rows are made by PostgreSQL itself (INSERT … SELECT over generate_series, no foreign-key
triggers), S series per server (a daily cycle plus noise), then ``VACUUM (ANALYZE)`` as
autovacuum would do (PostgreSQL 13+ vacuums insert-only tables; migration 0020 has it visit
``metric_rollups_1h`` every 10,000 new rows), so pages are all-visible and the hourly read
is an index-only scan of the covering primary key. The load average before each size's
queries is recorded: the machine may be shared. Then, per size:

- ``read_series``: the one call the usage API, capacity and recommendations make
  (``control_plane.usage.series``), 90 days at ``1h``, on a random server each time;
- ``usage_route``: what ``GET /servers/{id}/usage?step=1h`` does past authentication: the
  server lookup, the read, the per-cent series, every summary and the JSON body.

    .venv/bin/python benchmarks/usage_query.py [--sizes 100:10,1000:100] [--series 15]
    .venv/bin/python benchmarks/usage_query.py --smoke     # seconds, for the test suite

Writes benchmarks/results/usage_query.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert, text  # noqa: E402

from benchmarks.harness import add_out_argument, write_result  # noqa: E402
from control_plane.db.base import utcnow  # noqa: E402
from control_plane.db.engine import Database  # noqa: E402
from control_plane.db.migrate import upgrade  # noqa: E402
from control_plane.servers.models import Server  # noqa: E402
from control_plane.usage.series import TierReach, read_series  # noqa: E402
from control_plane.usage.service import server_usage  # noqa: E402
from tests.support import rows  # noqa: E402
from tests.support.postgres import create_database, drop_database  # noqa: E402

TARGET_P99_MS = 50.0
# Series a server reports (S of them are kept per server, in this order).
SERIES = (
    "cpu_percent", "load1", "load5", "load15", "memory_total_bytes", "memory_used_bytes",
    "memory_available_bytes", "swap_total_bytes", "swap_used_bytes", "process_count",
    "net_rx_bytes_per_second", "net_tx_bytes_per_second", "fs_used_bytes:/",
    "fs_total_bytes:/", "fs_inodes_used:/", "fs_inodes_total:/", "disk_read_bytes_per_second",
    "disk_write_bytes_per_second",
)  # fmt: skip
# One server's rows, series by series in bucket order (the primary key's): appends to the
# index rather than inserts all over it.
FILL = """
    INSERT INTO {table} (server_id, tenant_id, metric, bucket, count, sum, min, max)
    SELECT :server, :tenant, m.name, g.b, {per},
           {per} * (50 + 10 * sin(extract(epoch FROM g.b) / 13751.0 + m.k) + :k),
           40 + :k, 60 + :k
    FROM unnest(CAST(:names AS text[])) WITH ORDINALITY AS m(name, k)
    CROSS JOIN LATERAL generate_series(CAST(:start AS timestamptz), CAST(:end AS timestamptz),
                                       CAST(:width AS interval)) AS g(b)
"""


async def _partitions(db: Database, table: str, start: Any, end: Any) -> None:
    """Daily partitions over [start, end] when ``table`` is partitioned (the tiers' layout on
    PostgreSQL) and none covers a day yet."""
    async with db.session() as session:
        partitioned = await session.scalar(
            text(
                "SELECT count(*) FROM pg_partitioned_table WHERE partrelid = CAST(:t AS regclass)"
            ),
            {"t": table},
        )
        if not partitioned:
            return
        day = start.replace(hour=0, minute=0, second=0, microsecond=0)
        while day <= end:
            nxt = day + timedelta(days=1)
            covered = await session.scalar(
                text(
                    "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                    "WHERE i.inhparent = CAST(:t AS regclass) AND "
                    "pg_get_expr(c.relpartbound, c.oid) LIKE :bound"
                ),
                {"t": table, "bound": f"%FROM ('{day:%Y-%m-%d}%"},
            )
            if not covered:
                await session.execute(
                    text(
                        f"CREATE TABLE {table}_bench_{day:%Y%m%d} PARTITION OF {table} "
                        f"FOR VALUES FROM ('{day.isoformat()}') TO ('{nxt.isoformat()}')"
                    )
                )
            day = nxt


async def _populate(
    db: Database, hourly: int, minute: int, series: int, minute_days: int
) -> dict[str, Any]:
    """Servers, then their rollups made in SQL; returns counts and seconds taken."""
    await upgrade(db)
    tenant = await rows.a_tenant(db, "bench")
    async with db.session() as session:
        ids = [uuid.uuid4() for _ in range(hourly)]
        ids.sort()
        await session.execute(
            insert(Server),
            [{"id": i, "tenant_id": tenant, "name": f"u-{n}", "provider": "manual",
              "state": "ready", "mail_stack": "none"} for n, i in enumerate(ids)],
        )  # fmt: skip
    now = utcnow().replace(minute=0, second=0, microsecond=0)
    names = list(SERIES[:series])
    started = time.perf_counter()
    spans = (
        ("metric_rollups_1h", ids, now - timedelta(days=730), timedelta(hours=1), 240),
        (
            "metric_rollups_1m",
            ids[:minute],
            now - timedelta(days=minute_days),
            timedelta(minutes=1),
            4,
        ),
    )
    made: dict[str, int] = {}
    for table, servers, start, width, per in spans:
        await _partitions(db, table, start, now)
        for n, server in enumerate(servers):
            async with db.session() as session:
                # A bulk load: no per-row foreign-key triggers (the servers exist), no flush
                # waits.
                await session.execute(text("SET LOCAL session_replication_role = replica"))
                await session.execute(text("SET LOCAL synchronous_commit = off"))
                result = await session.execute(
                    text(FILL.format(table=table, per=per)),  # table: a constant above
                    {"server": server, "tenant": tenant, "k": n % 7, "names": names,
                     "start": start, "end": now - timedelta(seconds=1), "width": width},
                )  # fmt: skip
                made[table] = made.get(table, 0) + (result.rowcount or 0)  # type: ignore[attr-defined]
    async with db.engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text("VACUUM (ANALYZE) metric_rollups_1h"))
        await conn.execute(text("VACUUM (ANALYZE) metric_rollups_1m"))
        size = await conn.scalar(text("SELECT pg_database_size(current_database())"))
    return {
        "servers": ids,
        "hourly_rows": made.get("metric_rollups_1h", 0),
        "minute_rows": made.get("metric_rollups_1m", 0),
        "database_gb": round((size or 0) / 1e9, 2),
        "populate_seconds": round(time.perf_counter() - started, 1),
    }


def _ms(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50": round(statistics.median(ordered) * 1000, 2),
        "p99": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 2),
        "max": round(ordered[-1] * 1000, 2),
    }


async def _measure(db: Database, servers: list[uuid.UUID], queries: int) -> dict[str, Any]:
    reach = TierReach(timedelta(days=14), timedelta(days=90), timedelta(days=730))
    picker = random.Random(16)
    reads, routes, points = [], [], 0
    cpu: tuple[list[float], list[float]] = ([], [])  # (routes', reads') this process's CPU
    for n in range(queries * 2 + 10):
        server = picker.choice(servers)
        end = utcnow()
        start = end - timedelta(days=90)
        began, began_cpu = time.perf_counter(), time.process_time()
        async with db.session() as session:
            if n % 2:
                usage = await server_usage(session, server, start, end, "1h", reach, end)
                usage.json()
            else:
                got = await read_series(session, server, start, end, "1h", reach=reach)
        took = time.perf_counter() - began
        if n < 10:
            continue  # warm-up: connections, statement caches
        cpu[n % 2 == 0].append(time.process_time() - began_cpu)
        if n % 2:
            routes.append(took)
        else:
            reads.append(took)
            points = sum(len(p) for p in got.values())
    return {
        "read_series_ms": _ms(reads),
        "usage_route_ms": _ms(routes),
        # The wall figures stretch with other work on the machine; Python's own CPU time
        # does less so (PostgreSQL's work is not in it).
        "read_series_cpu_ms": _ms(cpu[1]),
        "usage_route_cpu_ms": _ms(cpu[0]),
        "points": points,
    }


async def _size(
    hourly: int, minute: int, series: int, queries: int, minute_days: int
) -> dict[str, Any]:
    url = await create_database()
    db = Database(url)
    try:
        data = await _populate(db, hourly, minute, series, minute_days)
        servers = data.pop("servers")
        load_before = round(os.getloadavg()[0], 2)
        figures = await _measure(db, servers, queries)
        figures["load_average_1m"] = [load_before, round(os.getloadavg()[0], 2)]
    finally:
        await db.dispose()
        await drop_database(url)
    return {"hourly_servers": hourly, "minute_servers": minute, **data, **figures}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    sizes = [tuple(int(x) for x in s.split(":")) for s in args.sizes.split(",")]
    steps = []
    for hourly, minute in sizes:
        step = await _size(hourly, minute, args.series, args.queries, args.minute_days)
        print(step, file=sys.stderr)
        steps.append(step)
    worst = max(s["read_series_ms"]["p99"] for s in steps)
    return {
        "benchmark": "usage_query",
        "query": "90 days at step 1h, one server",
        "series_per_server": args.series,
        "minute_days": args.minute_days,
        "queries_per_size": args.queries,
        "target_p99_ms": TARGET_P99_MS,
        "sizes": steps,
        "meets_target": worst <= TARGET_P99_MS,
        # Other work on the machine stretches every figure: the 1-minute load at the end.
        "load_average_1m": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100:10,1000:100", help="H:M pairs, comma-separated")
    parser.add_argument("--series", type=int, default=15, choices=range(1, len(SERIES) + 1))
    parser.add_argument("--queries", type=int, default=200, help="per size and kind")
    parser.add_argument("--minute-days", type=int, default=90, help="1-minute rows kept (days)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for the test suite")
    add_out_argument(parser, "usage_query")
    options = parser.parse_args()
    if options.smoke:
        options.sizes, options.series, options.queries, options.minute_days = "2:1,4:1", 3, 3, 2
    write_result(options.out, asyncio.run(main(options)))
