"""The web console's pages with S servers in the database (issue 18: 1,000; target: the fleet
overview and a server's page each render at p95 ≤ 200 ms), on PostgreSQL.

One tenant owns the servers: most ready, some failed or still provisioning, each with its
health checks, provisioning events, an address and this month's cost ledger (the costs
benchmark's rules, up to now: the month-to-date column rates it). A few servers carry a
day of one-minute agent samples (this machine's real sample, varied), which the server
page's chart reads at its default 24 h range. Timed: whole GET requests through the app
(the session cookie checked, the services called, the template rendered), in process over
ASGI, so what is timed is the server's work, not a socket's. The fleet is timed as the
tenant sees it and as an admin with every tenant; each server-page section (htmx loads
them after the page) and every other page of the top bar are timed too and reported
beside the targets.

    .venv/bin/python benchmarks/console.py [--servers 1000 --runs 40]
    .venv/bin/python benchmarks/console.py --smoke      # seconds, for the test suite

Writes benchmarks/results/console.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from google.protobuf.timestamp_pb2 import Timestamp  # noqa: E402
from sqlalchemy import insert, text  # noqa: E402

from agent.daemon import sample_to_proto  # noqa: E402
from agent.metrics import Sampler  # noqa: E402
from benchmarks.costs import ledger, prices  # noqa: E402
from benchmarks.harness import add_out_argument, write_result  # noqa: E402
from control_plane.api.app import create_app  # noqa: E402
from control_plane.api_keys.service import issue_key  # noqa: E402
from control_plane.costs.models import MeterReading, MeterSpan, Price  # noqa: E402
from control_plane.db.base import new_id, utcnow  # noqa: E402
from control_plane.db.engine import Database  # noqa: E402
from control_plane.db.migrate import upgrade  # noqa: E402
from control_plane.gateway.translate import sample_rows  # noqa: E402
from control_plane.health.models import HealthCheck  # noqa: E402
from control_plane.metrics.ingest import store_samples  # noqa: E402
from control_plane.metrics.partitions import make_ahead  # noqa: E402
from control_plane.provisioning.models import ServerEvent  # noqa: E402
from control_plane.server import freeze_startup_heap  # noqa: E402
from control_plane.servers.models import Server  # noqa: E402
from control_plane.settings import Settings  # noqa: E402
from control_plane.vault.client import Vault  # noqa: E402
from control_plane.web import pages, sessions  # noqa: E402
from control_plane.web.sessions import COOKIE  # noqa: E402
from control_plane.workspaces.models import Workspace  # noqa: E402
from mailfleet.agent.v1 import agent_pb2  # noqa: E402
from tests.support import rows  # noqa: E402
from tests.support.openbao import dev_openbao  # noqa: E402
from tests.support.postgres import create_database, drop_database  # noqa: E402

TARGET_P95_SECONDS = 0.2
CHECKS = ("agent", "disk", "smtp", "tls", "dns")
WORKSPACES = 20
CHARTED = 5  # servers with a day of samples; the server page is timed on these
BATCH = 5_000


def _state(n: int) -> str:
    return "failed" if n % 50 == 7 else "installing_mail" if n % 100 == 3 else "ready"


def _servers(tenant: uuid.UUID, count: int, workspaces: list[uuid.UUID]) -> list[dict[str, Any]]:
    now = utcnow()
    return [
        {"id": new_id(), "tenant_id": tenant, "workspace_id": workspaces[n % len(workspaces)],
         "name": f"mx{n:05}", "provider": "hostwinds", "plan": ("small", "medium", "large")[n % 3],
         "region": "dal", "ipv4": f"198.18.{n >> 8}.{n & 255}", "state": _state(n),
         "agent_state": "enrolled", "last_heartbeat_at": now, "mail_stack": "none",
         "state_changed_at": now, "failed_step": "tls" if _state(n) == "failed" else None,
         "failure_reason": "ACME order refused" if _state(n) == "failed" else None}
        for n in range(count)
    ]  # fmt: skip


def _details(tenant: uuid.UUID, servers: list[dict[str, Any]]) -> dict[Any, list[dict[str, Any]]]:
    now = utcnow()
    checks, events = [], []
    for n, server in enumerate(servers):
        sid = server["id"]
        for k, check in enumerate(CHECKS):
            failing = check == "disk" and n % 40 == 0
            checks.append({"id": new_id(), "tenant_id": tenant, "server_id": sid,
                           "check": check, "state": "failing" if failing else "ok",
                           "severity": "warning" if failing else "info",
                           "detail": "92 % used" if failing else "", "last_run_at": now,
                           "changed_at": now - timedelta(hours=k)})  # fmt: skip
        for k, step in enumerate(("requested", "creating", "booting", "enrolling", "ready")):
            events.append({"id": new_id(), "tenant_id": tenant, "server_id": sid,
                           "at": now - timedelta(days=3, minutes=-k), "state": step,
                           "kind": "step", "message": f"{step} done"})  # fmt: skip
    return {HealthCheck: checks, ServerEvent: events}


async def _insert(db: Database, model: Any, batch: list[dict[str, Any]]) -> None:
    async with db.session() as session:
        await session.execute(text("SET LOCAL synchronous_commit = off"))
        for at in range(0, len(batch), BATCH):
            chunk = batch[at : at + BATCH]
            if "id" not in chunk[0]:
                chunk = [{"id": new_id(), **row} for row in chunk]
            await session.execute(insert(model), chunk)


async def _samples(db: Database, tenant: uuid.UUID, server: uuid.UUID, now: datetime) -> int:
    """A day of one-minute samples, each this machine's agent sample with its CPU varied."""
    sample = sample_to_proto(Sampler().sample())
    samples = []
    for i in range(24 * 60):
        copy = agent_pb2.MetricSample()
        copy.CopyFrom(sample)
        stamp = Timestamp()
        stamp.FromDatetime(now - timedelta(minutes=24 * 60 - i))
        copy.sampled_at.CopyFrom(stamp)
        copy.cpu_percent = float(10 + (i * 37) % 80)
        samples.append(copy)
    batch = agent_pb2.MetricBatch(sequence=1, samples=samples)
    async with db.session() as session:
        return await store_samples(session, sample_rows(tenant, server, batch))


async def _populate(db: Database, count: int) -> dict[str, Any]:
    started = time.perf_counter()
    await upgrade(db)
    tenant = await rows.a_tenant(db, "bench")
    now = utcnow()
    month = datetime(now.year, now.month, 1, tzinfo=UTC)
    workspace_ids = [new_id() for _ in range(WORKSPACES)]
    await _insert(
        db, Workspace,
        [{"id": w, "tenant_id": tenant, "name": f"client-{n}"}
         for n, w in enumerate(workspace_ids)],
    )  # fmt: skip
    servers = _servers(tenant, count, workspace_ids)
    await _insert(db, Server, servers)
    for model, batch in _details(tenant, servers).items():
        await _insert(db, model, batch)
    spans, readings = ledger(tenant, workspace_ids, [s["id"] for s in servers], month, now)
    await _insert(db, Price, prices(month))
    await _insert(db, MeterSpan, spans)
    await _insert(db, MeterReading, readings)
    async with db.session() as session:
        await make_ahead(session, (now - timedelta(days=2)).date(), now.date())
    charted = [s["id"] for s in servers if s["state"] == "ready"][:CHARTED]
    stored = [await _samples(db, tenant, server, now) for server in charted]
    async with db.engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text("VACUUM (ANALYZE)"))
    return {
        "tenant": tenant,
        "charted": charted,
        "samples_per_charted_server": stored[0] if stored else 0,
        "spans": len(spans),
        "readings": len(readings),
        "day_of_month": now.day,
        "populate_seconds": round(time.perf_counter() - started, 1),
    }


async def _cookie(db: Database, settings: Settings, tenant: uuid.UUID | None) -> str:
    async with db.session() as session:
        scope = "tenant" if tenant else "admin"
        issued = await issue_key(session, scope=scope, tenant_id=tenant, name="bench")
    async with db.session() as session:
        return await sessions.start(session, issued.record, settings, utcnow())


def _summary(took: list[float]) -> dict[str, float]:
    ordered = sorted(took)
    return {
        "p50": round(statistics.median(ordered), 4),
        "p95": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))], 4),
        "max": round(ordered[-1], 4),
    }


async def _timed(runs: int, call: Callable[[int], Awaitable[httpx.Response]]) -> dict[str, Any]:
    took: list[float] = []
    size = 0
    for n in range(runs + 1):
        began = time.perf_counter()
        response = await call(n)
        elapsed = time.perf_counter() - began
        if response.status_code != 200:
            raise RuntimeError(
                f"{response.request.url} → {response.status_code}: {response.text[-600:]}"
            )
        if n:  # the first run warms connections and statement caches
            took.append(elapsed)
        size = len(response.content)
    return {**_summary(took), "bytes": size}


async def _measure(
    db: Database, settings: Settings, vault: Vault, data: dict[str, Any], runs: int
) -> dict[str, Any]:
    app = create_app(settings, database=db, vault=vault)
    freeze_startup_heap()  # as serve does once it is up
    transport = httpx.ASGITransport(app=app)
    tenant_cookie = await _cookie(db, settings, data["tenant"])
    admin_cookie = await _cookie(db, settings, None)
    charted: list[uuid.UUID] = data["charted"]
    figures: dict[str, Any] = {}
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://console.test") as tenant,
        httpx.AsyncClient(transport=transport, base_url="http://console.test") as admin,
    ):
        tenant.cookies.set(COOKIE, tenant_cookie)
        admin.cookies.set(COOKIE, admin_cookie)

        def server(n: int) -> str:
            return f"/ui/servers/{charted[n % len(charted)]}"

        figures["fleet"] = await _timed(runs, lambda n: tenant.get("/ui/"))
        figures["fleet_admin_all_tenants"] = await _timed(runs, lambda n: admin.get("/ui/"))
        figures["server"] = await _timed(runs, lambda n: tenant.get(server(n)))
        sections: dict[str, Any] = {}
        for section in pages.server_sections():
            path = section.slug
            sections[path] = await _timed(
                max(3, runs // 4), lambda n, p=path: tenant.get(f"{server(n)}/{p}")
            )
        figures["server_sections"] = sections
        areas: dict[str, Any] = {}  # every other page in the top bar, beside the targets
        for link in pages.nav_links():
            if link.path != "/ui/":
                areas[link.path] = await _timed(
                    max(3, runs // 4), lambda n, p=link.path: tenant.get(p)
                )
        figures["other_pages"] = areas
    return figures


async def main(args: argparse.Namespace) -> dict[str, Any]:
    url = await create_database()
    db = Database(url)
    try:
        data = await _populate(db, args.servers)
        with dev_openbao() as bao, tempfile.TemporaryDirectory() as home:
            settings = Settings(home=Path(home), vault_addr=bao.url)
            vault = Vault(bao.url, token=bao.token, kv_mount="mailfleet")
            load_before = round(os.getloadavg()[0], 2)
            figures = await _measure(db, settings, vault, data, args.runs)
    finally:
        await db.dispose()
        await drop_database(url)
    data.pop("tenant"), data.pop("charted")
    worst = max(figures["fleet"]["p95"], figures["server"]["p95"])
    return {
        "benchmark": "console",
        "report": "console pages rendered in process over ASGI (PostgreSQL), seconds",
        "servers": args.servers,
        "runs": args.runs,
        **data,
        **figures,
        "target_p95_seconds": TARGET_P95_SECONDS,
        "meets_target": worst <= TARGET_P95_SECONDS,
        "load_average_1m": [load_before, round(os.getloadavg()[0], 2)],
        "cpus": os.cpu_count(),
        "measured_on": date.today().isoformat(),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--smoke", action="store_true", help="20 servers, 3 runs")
    add_out_argument(parser, "console")
    args = parser.parse_args()
    if args.smoke:
        args.servers, args.runs = 20, 3
    result = asyncio.run(main(args))
    write_result(args.out, result)
    print(
        f"fleet p95 {result['fleet']['p95'] * 1000:.0f} ms, "
        f"server p95 {result['server']['p95'] * 1000:.0f} ms "
        f"({args.servers} servers, target {TARGET_P95_SECONDS * 1000:.0f} ms)"
    )
