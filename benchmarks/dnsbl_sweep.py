"""The DNSBL sweep over a fleet: N live addresses × L IP lists served by Knot on loopback,
looked up by the real ``control_plane.dnsbl.sweep.Sweep``/``Checker`` against PostgreSQL.

Knot serves L generated zones (``bl<n>.bench.test``, RFC 5782 test points, a share of the
addresses listed with a TXT reason; the first two lists are major). N ``ip_addresses`` rows
on 100 servers get their subjects, all due at once (a first deployment: the worst case),
and the sweep runs until each was looked up once: claims, A queries (and TXT for the
listings), results, history, scores, the addresses' listing, incident signals and the
automatic pause of addresses listed on a major list. A second cycle (every subject made
due again, nothing changed) is the steady state an hourly sweep costs.

This process is the control plane: its CPU (``time.process_time``) is the control plane's;
knotd's and PostgreSQL's are read with psutil. Target (issue 15): 10,000 addresses × 8
lists in at most 60 s.

    .venv/bin/python benchmarks/dnsbl_sweep.py [--ips 10000] [--lists 8] [--concurrency N]
    .venv/bin/python benchmarks/dnsbl_sweep.py --smoke     # 50 × 2, for the test suite

Writes benchmarks/results/dnsbl_sweep.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psutil  # type: ignore[import-untyped]  # noqa: E402
from sqlalchemy import func, insert, select, update  # noqa: E402

from benchmarks.harness import add_out_argument, write_result  # noqa: E402
from control_plane.db.base import utcnow  # noqa: E402
from control_plane.db.engine import Database  # noqa: E402
from control_plane.db.migrate import upgrade  # noqa: E402
from control_plane.dnsbl import schedule  # noqa: E402
from control_plane.dnsbl.models import DnsblCheck, DnsblResult, DnsblSubject  # noqa: E402
from control_plane.dnsbl.sweep import Checker, Sweep  # noqa: E402
from control_plane.incidents.models import Incident  # noqa: E402
from control_plane.ips.models import IpAddress  # noqa: E402
from control_plane.settings import Settings  # noqa: E402
from tests.support import rows  # noqa: E402
from tests.support.dnsbl import Listing, Zone, catalog, knot_zones  # noqa: E402
from tests.support.knot import run_knot_primary  # noqa: E402
from tests.support.postgres import create_database, drop_database  # noqa: E402

FIRST_ADDRESS = ipaddress.IPv4Address("198.18.0.1")
SERVERS = 100
TARGET_WALL_SECONDS = 60.0


def _plan(ips: int, lists: int, share: float) -> tuple[list[str], list[Zone], list[dict[str, Any]]]:
    """The addresses, the zones (each listing its own random share of them) and the
    catalog setting naming them."""
    picker = random.Random(15)
    addresses = [str(FIRST_ADDRESS + i) for i in range(ips)]
    zones, entries = [], []
    for n in range(lists):
        zone = f"bl{n}.bench.test"
        listed = picker.sample(addresses, max(1, round(ips * share)))
        zones.append(Zone(zone, listed={a: Listing("127.0.0.2", f"bench {n}") for a in listed}))
        entries.append({"zone": zone, "name": f"Bench {n}", "major": n < 2, "weight": 10 + n})
    return addresses, zones, catalog(*entries)


async def _populate(db: Database, addresses: list[str]) -> None:
    """A tenant, 100 servers, the live address rows (bulk), and their subjects, due now."""
    await upgrade(db)
    tenant = await rows.a_tenant(db, "bench")
    servers = [
        (await rows.a_server_row(db, tenant, name=f"bl-{n}", state="ready", mail_stack="none")).id
        for n in range(SERVERS)
    ]
    now = utcnow()
    values = [
        {"id": uuid.uuid4(), "tenant_id": tenant, "server_id": servers[i % SERVERS],
         "address": address, "provider": "manual", "is_main": i < SERVERS,
         "role": "sending" if i < SERVERS else "standby", "dns_published": i < SERVERS,
         "assigned_at": now}
        for i, address in enumerate(addresses)
    ]  # fmt: skip
    async with db.session() as session:
        for start in range(0, len(values), 2000):
            await session.execute(insert(IpAddress), values[start : start + 2000])
    async with db.session() as session:
        while await schedule.ensure_subjects(session, utcnow()):
            pass


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def _postgres_cpu(database: str) -> float:
    """CPU seconds so far of the live PostgreSQL backends serving ``database``."""
    total = 0.0
    for process in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            cmdline = " ".join(process.info["cmdline"] or [])
            if cmdline.startswith("postgres:") and f" {database} " in f"{cmdline} ":
                total += _cpu(process)
    return total


async def _cycle(
    db: Database, settings: Settings, knotd: psutil.Process, database: str, phase: str
) -> dict[str, Any]:
    checker = Checker(db, settings)
    sweep = Sweep(db, settings, checker)
    knot_before, pg_before = _cpu(knotd), _postgres_cpu(database)
    cpu_before, started = time.process_time(), time.perf_counter()
    try:
        checked = await sweep.run_once()
    finally:
        await checker.aclose()
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu_before
    queries = checker.lookup.queries
    return {
        "phase": phase,
        "subjects_checked": checked,
        "wall_seconds": round(wall, 2),
        "queries": queries,
        "queries_per_second": round(queries / wall),
        "control_plane_cpu_seconds": round(cpu, 2),
        "control_plane_cpu_us_per_query": round(cpu / max(1, queries) * 1e6),
        "knotd_cpu_seconds": round(_cpu(knotd) - knot_before, 2),
        "postgres_cpu_seconds": round(_postgres_cpu(database) - pg_before, 2),
    }


async def _tally(db: Database) -> dict[str, Any]:
    async with db.session() as session:
        states = await session.execute(
            select(DnsblResult.state, func.count()).group_by(DnsblResult.state)
        )
        paused = await session.scalar(
            select(func.count()).select_from(IpAddress).where(IpAddress.paused_at.is_not(None))
        )
        return {
            "results": {state: count for state, count in states.all()},
            "history_rows": await session.scalar(select(func.count()).select_from(DnsblCheck)),
            "incidents": await session.scalar(select(func.count()).select_from(Incident)),
            "auto_paused": paused,
        }


async def _again(db: Database) -> None:
    async with db.session() as session:
        await session.execute(update(DnsblSubject).values(next_run_at=utcnow()))


async def _measure(args: argparse.Namespace, home: Path) -> dict[str, Any]:
    addresses, zones, lists = _plan(args.ips, args.lists, args.listed_share)
    planted = sum(len(zone.listed) for zone in zones)
    url = await create_database()
    database = url.rsplit("/", 1)[-1]
    try:
        with run_knot_primary(knot_zones(zones)) as knot:
            knotd = next(
                p for p in psutil.Process().children(recursive=True) if p.name() == "knotd"
            )
            settings = Settings(
                home=home,
                database_url=url,
                dnsbl_lists=lists,
                dnsbl_resolvers=f"{knot.host}:{knot.port}",
                dnsbl_concurrency=args.concurrency,
                dnsbl_batch=args.batch,
                dnsbl_timeout_seconds=args.timeout,
                dnsbl_lease_seconds=600,
            )
            db = Database(url)
            try:
                started = time.perf_counter()
                await _populate(db, addresses)
                populate = time.perf_counter() - started
                first = await _cycle(db, settings, knotd, database, "first (all new)")
                tally = await _tally(db)
                print(json.dumps(first), flush=True)
                await _again(db)
                steady = await _cycle(db, settings, knotd, database, "steady (nothing changed)")
                print(json.dumps(steady), flush=True)
            finally:
                await db.dispose()
    finally:
        await drop_database(url)
    return {
        "populate_seconds": round(populate, 2),
        "planted_listings": planted,
        "cycles": [first, steady],
        "after_first_cycle": tally,
        "all_as_planted": tally["results"].get("listed", 0) == planted
        and tally["results"].get("clean", 0) == args.ips * args.lists - planted,
    }


def _arguments() -> argparse.Namespace:
    defaults = Settings()
    parser = argparse.ArgumentParser(description=__doc__)
    add_out_argument(parser, "dnsbl_sweep")
    parser.add_argument("--ips", type=int, default=10_000)
    parser.add_argument("--lists", type=int, default=8)
    parser.add_argument("--listed-share", type=float, default=0.01)
    parser.add_argument("--concurrency", type=int, default=defaults.dnsbl_concurrency)
    parser.add_argument("--batch", type=int, default=defaults.dnsbl_batch)
    parser.add_argument("--timeout", type=float, default=defaults.dnsbl_timeout_seconds)
    parser.add_argument("--smoke", action="store_true", help="50 addresses × 2 lists")
    args = parser.parse_args()
    if args.smoke:
        args.ips, args.lists, args.listed_share = 50, 2, 0.1
    return args


def main() -> None:
    args = _arguments()
    load_before = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="dnsbl-sweep-") as home:
        measured = asyncio.run(_measure(args, Path(home)))
    first = measured["cycles"][0]
    result = {
        "benchmark": "dnsbl_sweep",
        "ips": args.ips,
        "lists": args.lists,
        "listed_share": args.listed_share,
        "concurrency": args.concurrency,
        "batch": args.batch,
        "cpus": os.cpu_count(),
        "load_average_before": load_before,  # the machine is shared: read figures with it
        **measured,
        "wall_seconds": first["wall_seconds"],
        "queries_per_second": first["queries_per_second"],
        "control_plane_cpu_seconds": first["control_plane_cpu_seconds"],
        "target_wall_seconds": TARGET_WALL_SECONDS,
        "within_target": first["wall_seconds"] <= TARGET_WALL_SECONDS,
    }
    write_result(args.out, result)
    print(json.dumps({k: v for k, v in result.items() if k != "cycles"}, indent=2))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
