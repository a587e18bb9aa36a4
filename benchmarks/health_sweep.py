"""The mail-port health probes over a fleet: N servers on their own loopback addresses, each
probed on SMTP 25 (STARTTLS), 465 (implicit TLS), 587 (STARTTLS) and IMAP 993 (TLS) with
control_plane.health.probes.probe_mail_ports, at the health sweep's concurrency.

One asyncio responder in a child process answers for every server: it listens on four ports
of each 127.64.x.y address (loopback only) with one certificate from a test CA. The prober
runs in this process, so its CPU time (``time.process_time`` around the sweep) is the
prober's alone; the responder's is read from the child. Targets (issue 14): a 1,000-server
sweep in at most 15 s, and 10,000 servers every 300 s in at most 50 % of one core.

The full sweep (``--full-sweep``, on unless ``--no-full-sweep``) measures what ``serve`` runs:
a PostgreSQL database migrated to head, N ready MailU server rows on the responder's
addresses with fresh heartbeats and ten minutes of metric samples, every one made due, and
the real ``control_plane.health.sweep.Sweep``/``Checker`` run until each was checked once:
the claims, the probes, the samples read, ``mailu.status`` queued, results, history and
incident signals written. This process's CPU is the control plane's; the PostgreSQL
backends' CPU is read with psutil.

    .venv/bin/python benchmarks/health_sweep.py [--servers 1000] [--runs 3] [--concurrency N]

Writes benchmarks/results/health_sweep.json.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime as dt
import functools
import ipaddress
import json
import math
import multiprocessing as mp
import os
import random
import resource
import secrets
import ssl
import statistics
import sys
import tempfile
import time
import uuid
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psutil  # type: ignore[import-untyped]  # noqa: E402
from sqlalchemy import event, func, select, update  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncSession  # noqa: E402

from benchmarks.harness import add_out_argument, write_result  # noqa: E402
from control_plane.commands.models import Command  # noqa: E402
from control_plane.db.engine import Database  # noqa: E402
from control_plane.db.migrate import upgrade  # noqa: E402
from control_plane.health import schedule  # noqa: E402
from control_plane.health.models import HealthChange, HealthCheck  # noqa: E402
from control_plane.health.probes import MailPorts, probe_mail_ports, tls_context  # noqa: E402
from control_plane.health.sweep import Checker, Sweep  # noqa: E402
from control_plane.incidents.models import Incident  # noqa: E402
from control_plane.metrics.ingest import store_samples  # noqa: E402
from control_plane.servers.models import Server  # noqa: E402
from control_plane.settings import Settings  # noqa: E402
from tests.health.fleet import a_server  # noqa: E402
from tests.support import rows  # noqa: E402
from tests.support.mail_ports import Leaf, TestCA  # noqa: E402
from tests.support.openbao import dev_openbao  # noqa: E402
from tests.support.ports import free_port  # noqa: E402
from tests.support.postgres import create_database, drop_database  # noqa: E402
from tests.support.stack import ControlPlane, control_plane  # noqa: E402
from tests.support.webhooks import Arrival, WebhookReceiver, webhook_receiver  # noqa: E402

FIRST_ADDRESS = ipaddress.IPv4Address("127.64.0.1")
DOMAIN = "bench.mailfleet.test"
FLEET = 10_000
INTERVAL_SECONDS = 300.0
TARGET_SWEEP_SECONDS = 15.0
TARGET_SHARE_OF_ONE_CORE = 0.5
TARGET_NOTIFY_SECONDS = 60.0
LATENCY_ADDRESS = "127.65.0.1"  # its own address: the standard ports, as serve probes them
WEBHOOK_SECRET = secrets.token_hex(16)
EHLO = b"250-mx.%s\r\n250-PIPELINING\r\n250-SIZE 52428800\r\n%s250 8BITMIME\r\n" % (
    DOMAIN.encode(),
    b"%s",
)


def address(index: int, first: ipaddress.IPv4Address = FIRST_ADDRESS) -> str:
    return str(first + index)


# The responder: a child process with one event loop answering for every address.


async def _smtp(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    context: ssl.SSLContext,
    implicit: bool,
) -> None:
    tls = implicit
    try:
        writer.write(b"220 mx.%s ESMTP stand-in\r\n" % DOMAIN.encode())
        while line := await reader.readline():
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                writer.write(EHLO % (b"" if tls else b"250-STARTTLS\r\n"))
            elif verb == b"STAR" and not tls:
                writer.write(b"220 2.0.0 Ready to start TLS\r\n")
                await writer.drain()
                await writer.start_tls(context)
                tls = True
            elif verb == b"QUIT":
                writer.write(b"221 2.0.0 Bye\r\n")
                break
            else:
                writer.write(b"502 5.5.2 Not here\r\n")
        await writer.drain()
    except (OSError, ssl.SSLError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def _imap(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        writer.write(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] stand-in ready\r\n")
        line = await reader.readline()
        if line.upper().endswith(b"LOGOUT\r\n"):
            tag = line.split(b" ", 1)[0]
            writer.write(b"* BYE logging out\r\n" + tag + b" OK LOGOUT completed\r\n")
        await writer.drain()
    except (OSError, ssl.SSLError):
        pass
    finally:
        writer.close()


async def _silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accepts and never speaks (a hung server): the prober's timeout decides."""
    with contextlib.suppress(OSError):
        await reader.read()
    writer.close()


async def _respond(
    first: ipaddress.IPv4Address,
    servers: int,
    silent: range,
    ports: MailPorts,
    leaf: Leaf,
    pipe: Connection,
) -> None:
    context = leaf.server_context()
    listeners: list[asyncio.Server] = []
    for index in silent:
        for port in (ports.smtp, ports.submissions, ports.submission, ports.imaps):
            listeners.append(
                await asyncio.start_server(_silent, address(index, first), port, reuse_address=True)
            )
    for index in range(servers):
        host = address(index, first)
        for port, implicit in (
            (ports.smtp, False),
            (ports.submissions, True),
            (ports.submission, False),
        ):
            listeners.append(
                await asyncio.start_server(
                    functools.partial(_smtp, context=context, implicit=implicit),
                    host,
                    port,
                    ssl=context if implicit else None,
                    reuse_address=True,
                    backlog=256,
                )
            )
        listeners.append(
            await asyncio.start_server(_imap, host, ports.imaps, ssl=context, reuse_address=True)
        )
    pipe.send("ready")
    await asyncio.get_running_loop().run_in_executor(None, pipe.recv)  # until told to stop
    for listener in listeners:
        listener.close()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    pipe.send({"cpu_seconds": usage.ru_utime + usage.ru_stime, "max_rss_kb": usage.ru_maxrss})


def responder(
    first: ipaddress.IPv4Address,
    servers: int,
    silent: range,
    ports: MailPorts,
    leaf: Leaf,
    pipe: Connection,
) -> None:
    """The child's body: listeners for ``servers`` addresses from ``first`` until told to
    stop; then its CPU time goes back through ``pipe``."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(_respond(first, servers, silent, ports, leaf, pipe))


class Responder:
    """The responder child: started listening on construction, ``stop()`` gives its CPU use."""

    def __init__(
        self,
        first: ipaddress.IPv4Address,
        servers: int,
        ports: MailPorts,
        leaf: Leaf,
        silent: range = range(0),
    ) -> None:
        self._pipe, theirs = mp.Pipe()
        self._child = mp.get_context("spawn").Process(
            target=responder, args=(first, servers, silent, ports, leaf, theirs), daemon=True
        )
        started = time.perf_counter()
        self._child.start()
        if not self._pipe.poll(300) or self._pipe.recv() != "ready":
            self.kill()
            raise SystemExit("the responder did not start")
        self.listen_seconds = time.perf_counter() - started

    def stop(self) -> dict[str, float]:
        """Stop it (again: nothing) and return its CPU use."""
        if not self._child.is_alive():
            return {}
        self._pipe.send("stop")
        usage: dict[str, float] = self._pipe.recv() if self._pipe.poll(60) else {}
        self.kill()
        return usage

    def kill(self) -> None:
        self._child.join(30)
        if self._child.is_alive():
            self._child.kill()
            self._child.join(10)


# The prober: this process.


async def sweep(
    servers: list[int], concurrency: int, limit: float, context: ssl.SSLContext, ports: MailPorts
) -> tuple[float, float, collections.Counter[str]]:
    """One sweep: (wall seconds, prober CPU seconds, result counts by check and state)."""
    slots = asyncio.Semaphore(concurrency)
    counts: collections.Counter[str] = collections.Counter()

    async def one(index: int) -> None:
        async with slots:
            results = await probe_mail_ports(
                address(index),
                f"mx{index:05d}.{DOMAIN}",
                timeout=limit,
                tls_context=context,
                now=dt.datetime.now(dt.UTC),
                ports=ports,
            )
        counts.update(f"{r.check}:{r.state}" for r in results)

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one(i) for i in servers))
    return time.perf_counter() - wall, time.process_time() - cpu, counts


# The full sweep: the real Sweep and Checker over N server rows in PostgreSQL.

SAMPLE_STEP = 15.0  # the agent's shipped metrics interval
IDLE_SECONDS = 5.0  # (0.5 for a smoke run's handful of servers)
HOW_FULL = (
    "PostgreSQL migrated to head; N ready MailU rows (127.64.x.y, mx*.bench.mailfleet.test, "
    "heartbeats and ten minutes of 15 s samples); before each cycle (not timed) heartbeats are "
    "renewed, samples added up to now, the last mailu.status marked answered, and every "
    "server made due with schedule.due_at; timed: Sweep.run_once with the shipped settings "
    "(claims in batches of the concurrency; Checker.run per server: mail-port probes, agent "
    "link, backups, TLS renewals, resources from samples, mailu.status queued, results, "
    "history and incident signals written), the Checker's clock at the cycle's start. The "
    "first cycle (every check new, flap guard off so the failing backup.none confirms and "
    "opens incidents) is listed but not in the medians. PostgreSQL CPU: this database's live "
    "backends (psutil); the upper bound adds every backend the postmaster reaped meanwhile "
    "(pool overflow connections, but also other databases' on the shared server: the "
    "rate at which it grows while this benchmark idles is given); its "
    "background writers are not counted. No outbound observer configured (smtp.outbound not "
    "queued); no DNS zones"
)
GIB = 1024**3


def _sample(server_id: uuid.UUID, tenant_id: uuid.UUID, at: dt.datetime) -> dict[str, Any]:
    """One agent metrics sample of a healthy server (disk 30 %, memory 20 %, CPU 10 %)."""
    disk = 100 * GIB
    root = {
        "mountpoint": "/",
        "device": "/dev/vda1",
        "fstype": "ext4",
        "total_bytes": disk,
        "used_bytes": disk * 3 // 10,
        "free_bytes": disk * 7 // 10,
        "inodes_total": 1_000_000,
        "inodes_used": 50_000,
    }
    return {
        "server_id": server_id,
        "tenant_id": tenant_id,
        "sampled_at": at,
        "batch_sequence": int(at.timestamp()),
        "cpu_percent": 10.0,
        "load1": 0.1,
        "load5": 0.1,
        "load15": 0.1,
        "memory_total_bytes": 8 * GIB,
        "memory_used_bytes": 2 * GIB,
        "memory_available_bytes": 8 * GIB * 8 // 10,
        "swap_total_bytes": 0,
        "swap_used_bytes": 0,
        "disk_read_bytes": 0,
        "disk_write_bytes": 0,
        "net_rx_bytes": 0,
        "net_tx_bytes": 0,
        "process_count": 120,
        "filesystems": json.dumps([root]),
    }


class Fleet:
    """N ready MailU server rows of one tenant, on the responder's addresses."""

    def __init__(self, db: Database, settings: Settings, servers: int) -> None:
        self.db, self.settings, self.count = db, settings, servers
        self.tenant_id = uuid.UUID(int=0)
        self.ids: list[uuid.UUID] = []

    async def create(self) -> None:
        self.tenant_id = await rows.a_tenant(self.db, "sweep")
        now = dt.datetime.now(dt.UTC)
        for index in range(self.count):
            self.ids.append(
                await a_server(
                    self.db,
                    self.tenant_id,
                    mail_stack="mailu",
                    ipv4=address(index),
                    mail_hostname=f"mx{index:05d}.{DOMAIN}",
                    heartbeat=now,
                )
            )

    async def freshen(self) -> dt.datetime:
        """What agents did since the last cycle: heartbeats now, samples covering the
        resource window up to now, the last ``mailu.status`` answered; then every server
        is made due (``schedule.due_at``, as a run asked for or a re-check does). Returns
        that now."""
        now = dt.datetime.now(dt.UTC)
        window = self.settings.health_sustain_seconds + 2 * SAMPLE_STEP
        first = math.floor((now.timestamp() - window) / SAMPLE_STEP) * SAMPLE_STEP
        times = [
            dt.datetime.fromtimestamp(first + k * SAMPLE_STEP, dt.UTC)
            for k in range(int(window // SAMPLE_STEP) + 1)
        ]
        times = [t for t in times if t <= now]
        for start in range(0, self.count, 100):
            batch = [
                _sample(server_id, self.tenant_id, at)
                for server_id in self.ids[start : start + 100]
                for at in times
            ]
            async with self.db.session() as session:
                await store_samples(session, batch)

        async def due(session: AsyncSession) -> None:
            await session.execute(
                update(Server)
                .where(Server.tenant_id == self.tenant_id)
                .values(last_heartbeat_at=now)
                .execution_options(synchronize_session=False)
            )
            await session.execute(
                update(Command)
                .where(Command.kind == "mailu.status", Command.state == "queued")
                .values(state="succeeded")
                .execution_options(synchronize_session=False)
            )
            for server in await session.scalars(
                select(Server).where(Server.tenant_id == self.tenant_id)
            ):
                await schedule.due_at(session, server, now)

        await self.db.transact(due)
        return now

    async def tally(self) -> dict[str, Any]:
        """What the sweep left in the database: current check states (and failures waiting
        for their re-check), history rows, commands queued, incidents open."""

        async def read(session: AsyncSession) -> dict[str, Any]:
            states = await session.execute(
                select(
                    HealthCheck.check, HealthCheck.state, HealthCheck.pending_state, func.count()
                ).group_by(HealthCheck.check, HealthCheck.state, HealthCheck.pending_state)
            )
            counts: collections.Counter[str] = collections.Counter()
            for check, state, pending, n in states.all():
                counts[f"{check}:{state}" + (f"->{pending}?" if pending else "")] += n
            return {
                "checks": dict(sorted(counts.items())),
                "history_rows": await session.scalar(select(func.count(HealthChange.id))),
                "mailu_status_queued": await session.scalar(
                    select(func.count(Command.id)).where(
                        Command.kind == "mailu.status", Command.state == "queued"
                    )
                ),
                "incidents": await session.scalar(select(func.count(Incident.id))),
            }

        return await self.db.transact(read)


def _postgres_cpu(database: str) -> tuple[dict[int, float], float]:
    """CPU seconds so far of each live PostgreSQL backend serving ``database`` (by pid), and
    of every backend the server's postmaster has reaped (any database's)."""
    live: dict[int, float] = {}
    reaped = 0.0
    for process in psutil.process_iter(["cmdline", "name"]):
        with contextlib.suppress(psutil.Error):
            cmdline = " ".join(process.info["cmdline"] or [])
            if cmdline.startswith("postgres:") and f" {database} " in f"{cmdline} ":
                times = process.cpu_times()
                live[process.pid] = times.user + times.system
            elif process.info["name"] == "postgres" and not cmdline.startswith("postgres:"):
                times = process.cpu_times()  # the postmaster: its children's, once reaped
                reaped += times.children_user + times.children_system
    return live, reaped


def _postgres_spent(
    before: tuple[dict[int, float], float], after: tuple[dict[int, float], float]
) -> tuple[float, float]:
    """(this database's live backends, plus every backend reaped meanwhile: an upper bound,
    as other databases' short connections on the shared server end up there too)."""
    live = sum(cpu - before[0].get(pid, 0.0) for pid, cpu in after[0].items())
    return live, live + after[1] - before[1]


async def _cycle(
    fleet: Fleet, sweep: Sweep, database: str, servers: int, phase: str
) -> dict[str, Any]:
    """One timed cycle: ``Sweep.run_once`` until every due server was checked."""
    opened = collections.Counter[str]()

    def connected(*_: Any) -> None:
        opened["connections"] += 1

    def executed(*_: Any) -> None:
        opened["statements"] += 1

    engine = sweep.db.engine.sync_engine
    event.listen(engine, "connect", connected)
    event.listen(engine, "before_cursor_execute", executed)
    pg_before = _postgres_cpu(database)
    cpu, wall = time.process_time(), time.perf_counter()
    try:
        checked = await sweep.run_once()
    finally:
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        event.remove(engine, "connect", connected)
        event.remove(engine, "before_cursor_execute", executed)
    pg, pg_bound = _postgres_spent(pg_before, _postgres_cpu(database))
    return {
        "phase": phase,
        "checked": checked,
        "database_connections_opened": opened["connections"],
        "sql_statements_per_server": round(opened["statements"] / servers, 1),
        "wall_seconds": round(wall, 3),
        "control_plane_cpu_seconds": round(cpu, 3),
        "control_plane_cpu_ms_per_server": round(cpu / servers * 1000, 3),
        "postgres_cpu_seconds": round(pg, 3),
        "postgres_cpu_seconds_upper_bound": round(pg_bound, 3),
        **await fleet.tally(),
    }


async def _full_cycles(
    servers: int, runs: int, concurrency: int, limit: float, ca_file: Path, ports: MailPorts
) -> dict[str, Any]:
    url = await create_database("mailfleet_bench_sweep")
    database = url.rsplit("/", 1)[1]
    settings = Settings(
        health_ca_file=ca_file,
        health_concurrency=concurrency,
        health_probe_timeout_seconds=limit,
        database_url=url,
    )
    db = Database(url)
    cycles: list[dict[str, Any]] = []
    try:
        await upgrade(db)
        fleet = Fleet(db, settings, servers)
        started = time.perf_counter()
        await fleet.create()
        create_seconds = time.perf_counter() - started
        idle, idle_seconds = _postgres_cpu(database), IDLE_SECONDS if servers >= 100 else 0.5
        await asyncio.sleep(idle_seconds)  # what the rest of the shared server's load reaps
        idle_reaped = (_postgres_cpu(database)[1] - idle[1]) / idle_seconds
        for n in range(runs + 1):
            # Every check judged as of the cycle's start (the Checker's clock): what the
            # agents sent before it stays fresh however long the loaded machine takes, and
            # no re-check falls due inside the cycle, so each server is checked once.
            now = await fleet.freshen()
            first = n == 0  # every check new; no flap guard, so failures confirm at once
            config = settings.model_copy(update={"health_flap_seconds": 0.0}) if first else settings
            checker = Checker(db, config, ports=ports, clock=functools.partial(_at, now))
            phase = "first (every check new)" if first else "steady"
            cycles.append(await _cycle(fleet, Sweep(db, config, checker), database, servers, phase))
            print(json.dumps({"full_sweep_cycle": n, **cycles[-1]}), flush=True)
    finally:
        await db.dispose()
        await drop_database(url)
    steady = cycles[1:]
    per_server = statistics.median(r["control_plane_cpu_seconds"] for r in steady) / servers
    pg_per_server = statistics.median(r["postgres_cpu_seconds"] for r in steady) / servers
    pg_bound = statistics.median(r["postgres_cpu_seconds_upper_bound"] for r in steady)
    walls = [r["wall_seconds"] for r in steady]
    return {
        "servers": servers,
        "setup_seconds_rows": round(create_seconds, 1),
        "cycles": cycles,
        "all_checked_once": all(r["checked"] == servers for r in cycles),
        "median_wall_seconds": statistics.median(walls),
        "max_wall_seconds": max(walls),
        "target_sweep_seconds": TARGET_SWEEP_SECONDS,
        "control_plane_cpu_ms_per_server": round(per_server * 1000, 3),
        "postgres_cpu_ms_per_server": round(pg_per_server * 1000, 3),
        "postgres_cpu_ms_per_server_upper_bound": round(pg_bound / servers * 1000, 3),
        "postgres_reaped_cpu_seconds_per_second_idle": round(idle_reaped, 3),
        "projected_share_of_one_core": {
            "servers": FLEET,
            "interval_seconds": INTERVAL_SECONDS,
            "control_plane": round(per_server * FLEET / INTERVAL_SECONDS, 3),
            "postgres_live_backends": round(pg_per_server * FLEET / INTERVAL_SECONDS, 3),
            "postgres_upper_bound": round(pg_bound / servers * FLEET / INTERVAL_SECONDS, 3),
            "target": TARGET_SHARE_OF_ONE_CORE,
        },
        "how": HOW_FULL,
    }


def _at(moment: dt.datetime) -> dt.datetime:
    return moment


# Failure to first notification: a real control plane, a webhook channel, one server.


def _incident(plane: ControlPlane, server: str, since: dt.datetime) -> Any:
    """The server's smtp.25 incident opened after ``since``."""
    listed = plane.api("GET", "/api/v1/incidents", params={"server_id": server})["items"]
    for incident in listed:
        opened = dt.datetime.fromisoformat(incident["opened_at"])
        if incident["check"] == "smtp.25" and opened >= since - dt.timedelta(seconds=5):
            return incident
    raise SystemExit(f"no smtp.25 incident: {listed}")


async def _ready_server(url: str, tenant_id: str, ipv4: str, host: str) -> str:
    """A ready MailU server row whose agent beat just now (no agent runs here: the agent
    link must not be what notifies)."""
    db = Database(url)
    try:
        server_id = await a_server(
            db,
            uuid.UUID(tenant_id),
            mail_stack="mailu",
            ipv4=ipv4,
            mail_hostname=host,
            heartbeat=dt.datetime.now(dt.UTC),
        )
    finally:
        await db.dispose()
    return str(server_id)


FAST_TIMERS = {  # the smoke run's: the path is the same, the waits are a second
    "MAILFLEET_HEALTH_FLAP_SECONDS": "1",
    "MAILFLEET_INCIDENT_GROUP_SECONDS": "1",
    "MAILFLEET_PERIODIC_SECONDS": "1",
    "MAILFLEET_HEALTH_TICK_SECONDS": "0.2",
}


def _trigger_for(check: str, after: float) -> Any:
    def match(arrival: Arrival) -> bool:
        if arrival.at < after or arrival.json().get("event") != "trigger":
            return False
        if check in arrival.checks() and not arrival.signed_by(WEBHOOK_SECRET):
            raise SystemExit("the webhook's signature did not verify")
        return check in arrival.checks()

    return match


def _alerting_tenant(plane: ControlPlane, webhook_url: str) -> str:
    """A tenant whose default policy sends every incident to the signed webhook at once."""
    tenant = plane.api("POST", "/api/v1/tenants", 201, json={"name": "latency"})["id"]
    channel = plane.api(
        "POST",
        "/api/v1/alert-channels",
        201,
        json={
            "name": "ops",
            "kind": "webhook",
            "url": webhook_url,
            "secret": WEBHOOK_SECRET,
            "tenant_id": tenant,
        },
    )["id"]
    policy = {"channel_ids": [channel], "wait_minutes": 5}
    plane.api(
        "POST",
        "/api/v1/escalation-policies",
        201,
        json={"name": "default", "steps": [policy], "repeat": 0, "tenant_id": tenant},
    )
    return str(tenant)


def _run_checks(plane: ControlPlane, server: str) -> list[dict[str, Any]]:
    """``POST …/health/run``; a 409 (the periodic sweep is checking the server right now)
    is asked again, for at most 30 s."""
    path, deadline = f"/api/v1/servers/{server}/health/run", time.monotonic() + 30
    while True:
        response = plane.http.post(path)
        if response.status_code != 409 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if response.status_code != 200:
        raise SystemExit(f"POST {path}: {response.status_code} {response.text}")
    return list(response.json()["results"])


def _outage(plane: ControlPlane, receiver: WebhookReceiver, server: str) -> tuple[float, Any]:
    """The server's ports are down: a run asked for sees it (detection); the seconds until
    the signed trigger arrives, and the incident it opened."""
    detected, detected_at = time.monotonic(), dt.datetime.now(dt.UTC)
    found = _run_checks(plane, server)
    states = {r["check"]: r["state"] for r in found}
    if states.get("smtp.25") != "failing":
        raise SystemExit(f"the failure was not seen: {found}")
    trigger = receiver.wait_for(_trigger_for("smtp.25", detected), 600, "trigger")
    return trigger.at - detected, _incident(plane, server, detected_at)


def notification_latency(
    leaf: Leaf, ca_file: Path, runs: int, fast_timers: bool = False
) -> dict[str, Any]:
    """``serve`` with its shipped timers (PostgreSQL, OpenBao); per run: the server's mail
    ports go down, a check sees it (``POST …/health/run``: detection), and the time until
    the signed webhook's trigger arrives (the flap guard's re-check, the group window, the
    escalation and delivery jobs); then the ports come back and the incident resolves
    before the next run."""
    first = ipaddress.IPv4Address(LATENCY_ADDRESS)
    host = f"mx-latency.{DOMAIN}"
    env = {
        "MAILFLEET_HEALTH_CA_FILE": str(ca_file),
        "MAILFLEET_ALERT_ALLOW_PRIVATE_TARGETS": "true",
        "MAILFLEET_AGENT_UNKNOWN_AFTER_SECONDS": "3600",  # the row's one beat lasts the run
        "MAILFLEET_HEARTBEAT_INTERVAL_SECONDS": "10",
        "MAILFLEET_METRICS_INTERVAL_SECONDS": "15",
        "MAILFLEET_LOG_LEVEL": "warning",
        **(FAST_TIMERS if fast_timers else {}),
    }
    timers = Settings.model_validate(
        {k.removeprefix("MAILFLEET_").lower(): v for k, v in env.items()}
    )
    measured: list[dict[str, float]] = []
    database_url = asyncio.run(create_database("mailfleet_bench"))
    try:
        with (
            webhook_receiver() as receiver,
            tempfile.TemporaryDirectory() as tmp,
            dev_openbao() as bao,
            control_plane(Path(tmp), bao, database_url, **env) as plane,
        ):
            tenant = _alerting_tenant(plane, receiver.url)
            server = asyncio.run(_ready_server(database_url, tenant, str(first), host))
            responder_ = Responder(first, 1, MailPorts(), leaf)
            try:
                states = {r["check"]: r["state"] for r in _run_checks(plane, server)}
                if states.get("smtp.25") != "ok":
                    raise SystemExit(f"the server is not healthy to begin with: {states}")
                for _ in range(runs):
                    responder_.stop()
                    seconds, incident = _outage(plane, receiver, server)
                    measured.append({"detection_to_trigger_seconds": round(seconds, 2)})
                    print(json.dumps({"latency": measured[-1]}), flush=True)
                    responder_ = Responder(first, 1, MailPorts(), leaf)  # back for the next run
                    _run_checks(plane, server)
                    plane.wait_until(
                        f"/api/v1/incidents/{incident['id']}",
                        lambda body: body["state"] == "resolved",
                        120,
                    )
            finally:
                responder_.stop()
    finally:
        asyncio.run(drop_database(database_url))
    to_trigger = [m["detection_to_trigger_seconds"] for m in measured]
    return {
        "runs": measured,
        "median_detection_to_trigger_seconds": statistics.median(to_trigger),
        "max_detection_to_trigger_seconds": max(to_trigger),
        "target_seconds": TARGET_NOTIFY_SECONDS,
        "timers": {
            "health_flap_seconds": timers.health_flap_seconds,
            "incident_group_seconds": timers.incident_group_seconds,
            "periodic_seconds": timers.periodic_seconds,
            "health_tick_seconds": timers.health_tick_seconds,
        },
        "how": "serve on PostgreSQL with OpenBao and its shipped timers; one server's four "
        "ports stop (refused), POST /health/run sees it (detection), a loopback receiver "
        "verifies the signed webhook. The server row has no agent behind it: its resource "
        "and backup checks fail too and ride in the same grouped notification",
    }


def _healthy_run(
    args: argparse.Namespace, context: ssl.SSLContext, ports: MailPorts
) -> dict[str, Any]:
    """One sweep of the whole healthy fleet: its wall time, the prober's CPU, its results."""
    wall, cpu, counts = asyncio.run(
        sweep(list(range(args.servers)), args.concurrency, args.timeout, context, ports)
    )
    return {
        "wall_seconds": round(wall, 3),
        "prober_cpu_seconds": round(cpu, 3),
        "prober_cpu_ms_per_server": round(cpu / args.servers * 1000, 3),
        "results_ok": sum(v for k, v in counts.items() if k.endswith(":ok")),
        "results": dict(sorted(counts.items())),
    }


def _arguments() -> argparse.Namespace:
    defaults = Settings()
    parser = argparse.ArgumentParser(description=__doc__)
    add_out_argument(parser, "health_sweep")
    parser.add_argument("--servers", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--concurrency",
        type=int,
        default=defaults.health_concurrency,
        help="servers probed at once (default: MAILFLEET_HEALTH_CONCURRENCY's default)",
    )
    parser.add_argument("--timeout", type=float, default=defaults.health_probe_timeout_seconds)
    parser.add_argument(
        "--silent-share",
        type=float,
        default=0.01,
        help="in one more sweep, this share of servers accepts and never speaks",
    )
    parser.add_argument(
        "--refused-share",
        type=float,
        default=0.05,
        help="and this share has nothing listening (refused)",
    )
    parser.add_argument(
        "--latency-runs",
        type=int,
        default=1,
        help="failure-to-first-notification runs through a real serve (0: none; needs root "
        "for the standard ports)",
    )
    parser.add_argument(
        "--full-sweep",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run the real Sweep and Checker over N server rows in PostgreSQL",
    )
    parser.add_argument(
        "--fast-timers",
        action="store_true",
        help="the latency run with one-second flap guard, group window and ticks (smoke runs)",
    )
    return parser.parse_args()


def main() -> None:
    args = _arguments()
    silent = range(args.servers, args.servers + round(args.servers * args.silent_share))
    refused = range(silent.stop, silent.stop + round(args.servers * args.refused_share))
    degraded_fleet = [*range(args.servers - len(silent) - len(refused)), *silent, *refused]
    random.Random(14).shuffle(degraded_fleet)  # spread through the sweep, as in a real fleet

    load_before = [round(x, 2) for x in os.getloadavg()]
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    ports = MailPorts(free_port(), free_port(), free_port(), free_port())
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="health-sweep-") as tmp:
        ca = TestCA(Path(tmp))
        leaf = ca.issue(f"*.{DOMAIN}")
        context = tls_context(Settings(health_ca_file=ca.ca_file))
        child = Responder(FIRST_ADDRESS, args.servers, ports, leaf, silent)
        listen_seconds = child.listen_seconds
        try:
            for n in range(args.runs):
                runs.append(_healthy_run(args, context, ports))
                print(json.dumps({"run": n, **runs[-1]}), flush=True)
            wall, cpu, counts = asyncio.run(
                sweep(degraded_fleet, args.concurrency, args.timeout, context, ports)
            )
            degraded = {
                "silent_servers": len(silent),
                "refused_servers": len(refused),
                "wall_seconds": round(wall, 3),
                "prober_cpu_seconds": round(cpu, 3),
                "results": dict(sorted(counts.items())),
            }
            print(json.dumps({"degraded": degraded}), flush=True)
            full: dict[str, Any] | str = "not run (--no-full-sweep)"
            if args.full_sweep:
                full = asyncio.run(
                    _full_cycles(
                        args.servers, args.runs, args.concurrency, args.timeout, ca.ca_file, ports
                    )
                )
            responder_usage = child.stop()
        finally:
            child.kill()
        latency: dict[str, Any] | str = "not run (--latency-runs 0)"
        if args.latency_runs > 0 and os.geteuid() != 0:
            latency = "not run: binding the standard mail ports needs root"
        elif args.latency_runs > 0:
            latency = notification_latency(
                leaf, ca.ca_file, args.latency_runs, fast_timers=args.fast_timers
            )

    per_server = statistics.median(r["prober_cpu_seconds"] for r in runs) / args.servers
    walls = [r["wall_seconds"] for r in runs]
    share = per_server * FLEET / INTERVAL_SECONDS
    result = {
        "benchmark": "health_sweep",
        "servers": args.servers,
        "checks_per_server": 5,
        "concurrency": args.concurrency,
        "timeout_seconds": args.timeout,
        "cpus": os.cpu_count(),
        "load_average_before": load_before,  # the machine is shared: read figures with it
        "certificate": "ECDSA P-256 leaf from a test CA, verified for each mail host",
        "responder_listen_seconds": round(listen_seconds, 2),
        "runs": runs,
        "all_ok": all(r["results_ok"] == args.servers * 5 for r in runs),
        "median_wall_seconds": statistics.median(walls),
        "max_wall_seconds": max(walls),
        "target_sweep_seconds": TARGET_SWEEP_SECONDS,
        "prober_cpu_ms_per_server": round(per_server * 1000, 3),
        "servers_per_core_per_interval": int(INTERVAL_SECONDS / per_server),
        "projected_share_of_one_core": {
            "servers": FLEET,
            "interval_seconds": INTERVAL_SECONDS,
            "share": round(share, 3),
            "target": TARGET_SHARE_OF_ONE_CORE,
        },
        "degraded_sweep": degraded,
        "full_sweep": full,
        "failure_to_first_notification": latency,
        "responder_cpu_seconds_all_runs": round(responder_usage.get("cpu_seconds", 0.0), 2),
    }
    write_result(args.out, result)
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
