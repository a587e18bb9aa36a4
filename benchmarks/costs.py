"""A month's cost report for one tenant with S servers and W workspaces (issue 17: 1,000 and
200; target ≤ 1 s), against PostgreSQL holding that month's ledger.

The ledger: a plan span per server (a tenth resized mid-month, a fiftieth deleted), one
address each and a second for a tenth, a day's backup size and bandwidth per server, and
for a twentieth of the servers (shared) five workspaces' mailbox weights a day. Servers are
not rows: the ledger names them by id only. Timed: ``cost_report`` in a tenant session,
as ``GET /api/v1/costs`` runs it (month to now, by workspace, with the projection), and
the response body made from it; the clock is fixed on the month's 30th at noon.

    .venv/bin/python benchmarks/costs.py [--servers 1000 --workspaces 200 --runs 7]
    .venv/bin/python benchmarks/costs.py --smoke      # seconds, for the test suite

Writes benchmarks/results/costs.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert, text  # noqa: E402

from benchmarks.harness import add_out_argument, write_result  # noqa: E402
from control_plane.costs.models import MeterReading, MeterSpan, Price  # noqa: E402
from control_plane.costs.report import cost_report  # noqa: E402
from control_plane.costs.schemas import CostReportOut  # noqa: E402
from control_plane.db.base import new_id  # noqa: E402
from control_plane.db.engine import Database  # noqa: E402
from control_plane.db.migrate import upgrade  # noqa: E402
from control_plane.workspaces.models import Workspace  # noqa: E402
from tests.support import rows  # noqa: E402
from tests.support.postgres import create_database, drop_database  # noqa: E402

TARGET_SECONDS = 1.0
MONTH = datetime(2026, 11, 1, tzinfo=UTC)
NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
PROVIDER = "hostwinds"
PLANS = {"small": ("10.00", 1000), "medium": ("20.00", 2000), "large": ("40.00", 4000)}
BATCH = 5_000


def prices(month: datetime = MONTH) -> list[dict[str, Any]]:
    since = month - timedelta(days=90)
    entries = [("plan", plan, amount, gb) for plan, (amount, gb) in PLANS.items()]
    entries += [("ip", "", "4.99", None), ("backup_storage", "s3", "0.023", None)]
    entries += [("bandwidth", "", "0.01", None)]
    return [
        {"id": new_id(), "provider": PROVIDER, "kind": kind, "item": item, "currency": "USD",
         "amount": Decimal(amount), "included_gb": gb, "effective_from": since,
         "effective_to": None, "source": "admin"}
        for kind, item, amount, gb in entries
    ]  # fmt: skip


def ledger(
    tenant: uuid.UUID,
    workspaces: list[uuid.UUID],
    server_ids: list[uuid.UUID],
    month: datetime = MONTH,
    now: datetime = NOW,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Spans and readings of ``month`` up to ``now``'s day, by the rules in the docstring
    (the console's benchmark bills its own servers this way)."""
    spans: list[dict[str, Any]] = []
    readings: list[dict[str, Any]] = []
    days = (now.date() - month.date()).days + 1
    for n, server in enumerate(server_ids):
        name = f"srv-{n}"
        shared = n % 20 == 0
        owner = None if shared else workspaces[n % len(workspaces)]
        base = {"tenant_id": tenant, "server_id": server, "server_name": name,
                "workspace_id": owner, "provider": PROVIDER}  # fmt: skip
        plan = list(PLANS)[n % 3]
        start = month - timedelta(days=n % 40)
        end = month + timedelta(days=12 + n % 10) if n % 50 == 1 else None
        if n % 10 == 3:  # resized on the 15th
            spans.append({**base, "resource": "server", "item": plan, "started_at": start,
                          "ended_at": month + timedelta(days=14)})  # fmt: skip
            plan, start = "large", month + timedelta(days=14)
        spans.append({**base, "resource": "server", "item": plan, "started_at": start,
                      "ended_at": end})  # fmt: skip
        spans.append({**base, "resource": "ip", "item": f"10.{n >> 8}.{n & 255}.1",
                      "started_at": start, "ended_at": end})  # fmt: skip
        if n % 10 == 5:
            spans.append({**base, "resource": "ip", "item": f"10.{n >> 8}.{n & 255}.2",
                          "started_at": month + timedelta(days=7), "ended_at": end})  # fmt: skip
        last = days if end is None else (end.date() - month.date()).days + 1
        for d in range(last):
            day = month.date() + timedelta(days=d)
            readings.append({**base, "resource": "backup_storage", "item": "s3", "day": day,
                             "quantity": (5 + d % 3 + n % 7) * 1_000_000_000})  # fmt: skip
            readings.append({**base, "resource": "bandwidth", "item": "", "day": day,
                             "quantity": (20 + n % 50) * 1_000_000_000})  # fmt: skip
            if shared:
                for k in range(min(5, len(workspaces))):
                    readings.append({**base, "resource": "share_mailboxes",
                                     "item": str(workspaces[(n + k) % len(workspaces)]),
                                     "day": day, "quantity": 10 + k})  # fmt: skip
    return spans, readings


async def _populate(db: Database, servers: int, workspaces: int) -> dict[str, Any]:
    await upgrade(db)
    tenant = await rows.a_tenant(db, "bench")
    started = time.perf_counter()
    async with db.session() as session:
        ids = [new_id() for _ in range(workspaces)]
        await session.execute(
            insert(Workspace),
            [{"id": i, "tenant_id": tenant, "name": f"client-{n}",
              "markup_percent": Decimal(n % 4 * 5) or None} for n, i in enumerate(ids)],
        )  # fmt: skip
        await session.execute(insert(Price), prices())
    spans, readings = ledger(tenant, ids, [uuid.uuid4() for _ in range(servers)])
    async with db.session() as session:
        await session.execute(text("SET LOCAL synchronous_commit = off"))
        for model, batch in ((MeterSpan, spans), (MeterReading, readings)):
            for at in range(0, len(batch), BATCH):
                chunk = [{"id": new_id(), **row} for row in batch[at : at + BATCH]]
                await session.execute(insert(model), chunk)
    async with db.engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text("VACUUM (ANALYZE) meter_spans"))
        await conn.execute(text("VACUUM (ANALYZE) meter_readings"))
    return {
        "tenant": tenant,
        "spans": len(spans),
        "readings": len(readings),
        "populate_seconds": round(time.perf_counter() - started, 1),
    }


async def _measure(db: Database, tenant: uuid.UUID, runs: int) -> dict[str, Any]:
    took: list[float] = []
    cpu: list[float] = []  # this process's CPU per report: less swayed by a shared machine
    groups = lines_total = 0
    for n in range(runs + 1):
        began, began_cpu = time.perf_counter(), time.process_time()
        async with db.tenant_session(tenant) as session:
            report = await cost_report(session, MONTH, NOW, NOW, None, None, "workspace")
        body = CostReportOut.model_validate(asdict(report)).model_dump_json()
        if n:  # the first run warms connections and statement caches
            took.append(time.perf_counter() - began)
            cpu.append(time.process_time() - began_cpu)
        groups, lines_total = len(report.groups), len(body)
    ordered = sorted(took)
    (total,) = report.totals
    (month,) = report.month_to_date
    return {
        "report_seconds": {
            "p50": round(statistics.median(ordered), 3),
            "p99": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3),
            "max": round(ordered[-1], 3),
        },
        "report_cpu_seconds_p50": round(statistics.median(cpu), 3),
        "groups": groups,
        "body_bytes": lines_total,
        "month_to_date": str(month.actual),
        "projected": str(month.projected),
        "total": str(total.cost),
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    url = await create_database()
    db = Database(url)
    try:
        data = await _populate(db, args.servers, args.workspaces)
        tenant = data.pop("tenant")
        load_before = round(os.getloadavg()[0], 2)
        figures = await _measure(db, tenant, args.runs)
    finally:
        await db.dispose()
        await drop_database(url)
    return {
        "benchmark": "costs",
        "report": "one tenant's month to date by workspace, with projection (PostgreSQL)",
        "servers": args.servers,
        "workspaces": args.workspaces,
        "runs": args.runs,
        **data,
        **figures,
        "target_seconds": TARGET_SECONDS,
        "meets_target": figures["report_seconds"]["p99"] <= TARGET_SECONDS,
        "load_average_1m": [load_before, round(os.getloadavg()[0], 2)],
        "cpus": os.cpu_count(),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", type=int, default=1000)
    parser.add_argument("--workspaces", type=int, default=200)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for the test suite")
    add_out_argument(parser, "costs")
    options = parser.parse_args()
    if options.smoke:
        options.servers, options.workspaces, options.runs = 10, 4, 2
    write_result(options.out, asyncio.run(main(options)))
