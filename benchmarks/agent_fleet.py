"""Many agents against one control plane on PostgreSQL: connections, ingest, command latency.

Simulated agents are lightweight clients in a few worker processes that speak the real
protocol over real mutual TLS: they enroll with join tokens (Vault signs every certificate),
hold one stream each, heartbeat every 10 s, send a metric batch every 15 s and answer pings.
For each fleet size the driver measures the control plane's CPU (every process of ``serve``'s
group, from /proc) over an idle window (heartbeats and metrics only) and over a command
window, the round trip of ``--commands`` ping commands (API POST → result stored, observed by
long-polling the API) sent to servers drawn from the whole fleet (each at most once while
commands < agents), and the samples stored in PostgreSQL against those the agents sent.

On a machine with two cores or more the control plane is pinned to core 0 (``taskset``) and
the driver, its simulator workers and OpenBao to core 1, so the simulator's cost is not
counted against the control plane (PostgreSQL is not pinned).

With ``--replicas 2`` two ``serve`` replicas share the database behind the packaged HAProxy
configuration (agents, enrollment and the API all through it); both replicas are pinned to
core 0 (no spare core for a true speed-up: the figure is their CPU together per 1,000
agents, which should not grow), HAProxy to the driver's core. Each step also checks that
every ping ended exactly once (one final state per command in the database).

    .venv/bin/python benchmarks/agent_fleet.py --sizes 500,1000 [--window 60] [--commands 1000]
        [--replicas 2]

Writes benchmarks/results/agent_fleet.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import grpc
import httpx
from google.protobuf.timestamp_pb2 import Timestamp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.identity import fetch_pinned_ca, new_key_and_csr  # noqa: E402
from benchmarks.harness import add_out_argument, write_result  # noqa: E402
from mailfleet.agent.v1 import agent_pb2, agent_pb2_grpc  # noqa: E402
from tests.support.haproxy import (  # noqa: E402
    Replica,
    haproxy_binary,
    loopback_binds,
    running_haproxy,
)
from tests.support.openbao import DevOpenBao, dev_openbao  # noqa: E402
from tests.support.postgres import create_database, drop_database  # noqa: E402
from tests.support.stack import ControlPlane, control_plane, control_plane_env  # noqa: E402

HEARTBEAT_SECONDS = 10.0
METRICS_SECONDS = 15.0
WORKERS = 2
PLANE_CPU, SIMULATOR_CPU = 0, 1
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def sample() -> agent_pb2.MetricSample:
    stamp = Timestamp()
    stamp.GetCurrentTime()
    return agent_pb2.MetricSample(
        sampled_at=stamp,
        cpu_percent=random.uniform(0, 100),
        load1=0.3,
        load5=0.2,
        load15=0.1,
        memory_total_bytes=2 * 2**30,
        memory_used_bytes=2**30,
        memory_available_bytes=2**30,
        swap_total_bytes=0,
        swap_used_bytes=0,
        filesystems=[
            agent_pb2.FilesystemUsage(
                mountpoint="/",
                device="/dev/vda1",
                fstype="ext4",
                total_bytes=50 * 2**30,
                used_bytes=10 * 2**30,
                free_bytes=40 * 2**30,
            )
        ],
        disk_read_bytes=random.randrange(2**40),
        disk_write_bytes=random.randrange(2**40),
        net_rx_bytes=random.randrange(2**40),
        net_tx_bytes=random.randrange(2**40),
        process_count=120,
    )


def mail_counts() -> agent_pb2.MailCounts:
    """Today's figures of one sending address, as an agent with a Postfix log sends them."""
    sent = random.randrange(1000)
    return agent_pb2.MailCounts(
        days=[
            agent_pb2.MailCount(
                day=time.strftime("%Y-%m-%d", time.gmtime()),
                source_ip="198.18.0.10",
                sender_domain="example.com",
                sent=sent,
                deferred=sent // 20,
                bounced=sent // 100,
            )
        ],
        log_found=True,
        lines_read=sent * 4,
    )


async def simulated_agent(
    address: str, ca: bytes, key: bytes, cert: bytes, connected: list[int], stop: asyncio.Event
) -> None:
    credentials = grpc.ssl_channel_credentials(ca, key, cert)
    async with grpc.aio.secure_channel(address, credentials) as channel:
        call = agent_pb2_grpc.AgentLinkStub(channel).Connect()
        await call.write(
            agent_pb2.AgentMessage(
                hello=agent_pb2.Hello(
                    agent_version="sim",
                    capabilities=["heartbeat", "metrics", "commands", "mail_counts"],
                )
            )
        )
        reply = await call.read()
        assert isinstance(reply, agent_pb2.ControlMessage) and reply.HasField("hello")
        beat_every = reply.hello.heartbeat_interval_ms / 1000  # as the plane asks, as an agent
        batch_every = reply.hello.metrics_interval_ms / 1000
        # as a real agent: its mail counts unasked, when the plane agreed (else it asks)
        counts_every = reply.hello.mail_counts_interval_ms / 1000 or float("inf")
        connected[0] += 1
        outbox: asyncio.Queue[agent_pb2.AgentMessage] = asyncio.Queue()

        async def read() -> None:
            while True:
                message = await call.read()
                if not isinstance(message, agent_pb2.ControlMessage):
                    return
                if message.HasField("command"):
                    outbox.put_nowait(
                        agent_pb2.AgentMessage(
                            command_update=agent_pb2.CommandUpdate(
                                id=message.command.id,
                                state=agent_pb2.COMMAND_STATE_SUCCEEDED,
                                progress_percent=100,
                                result_json=b'{"pong": true}',
                            )
                        )
                    )

        async def write() -> None:
            sequence = 0
            next_beat = time.monotonic() + random.uniform(0, beat_every)
            next_batch = time.monotonic() + random.uniform(0, batch_every)
            next_counts = time.monotonic() + random.uniform(0, min(counts_every, 1e9))
            while True:
                now = time.monotonic()
                if now >= next_counts:
                    await call.write(agent_pb2.AgentMessage(mail_counts=mail_counts()))
                    next_counts += counts_every
                if now >= next_beat:
                    await call.write(agent_pb2.AgentMessage(heartbeat=agent_pb2.Heartbeat()))
                    next_beat += beat_every
                if now >= next_batch:
                    sequence += 1
                    await call.write(
                        agent_pb2.AgentMessage(
                            metrics=agent_pb2.MetricBatch(sequence=sequence, samples=[sample()])
                        )
                    )
                    next_batch += batch_every
                wait = max(0.0, min(next_beat, next_batch, next_counts) - time.monotonic())
                try:
                    message = await asyncio.wait_for(outbox.get(), wait)
                except TimeoutError:
                    continue
                await call.write(message)

        tasks = [
            asyncio.create_task(read()),
            asyncio.create_task(write()),
            asyncio.create_task(stop.wait()),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            connected[0] -= 1


async def keep_connected(
    address: str, ca: bytes, key: bytes, cert: bytes, connected: list[int], stop: asyncio.Event
) -> None:
    """As a real agent: connect again a second after the stream failed or ended."""
    while not stop.is_set():
        with contextlib.suppress(grpc.aio.AioRpcError, AssertionError):
            await simulated_agent(address, ca, key, cert, connected, stop)
        if not stop.is_set():
            await asyncio.sleep(1)


async def enroll(enroll_address: str, ca: bytes, token: str) -> tuple[bytes, bytes]:
    key, csr = new_key_and_csr("sim")
    async with grpc.aio.secure_channel(
        enroll_address, grpc.ssl_channel_credentials(root_certificates=ca)
    ) as channel:
        response = await agent_pb2_grpc.EnrollmentStub(channel).Enroll(
            agent_pb2.EnrollRequest(join_token=token, csr_pem=csr, agent_version="sim"), timeout=120
        )
    return key, response.certificate_pem


def worker(conn: Any, address: str, enroll_address: str, pin: str) -> None:
    """A process holding many simulated agents; told by the driver how many to add."""

    async def run() -> None:
        ca = fetch_pinned_ca(enroll_address, pin)
        stop = asyncio.Event()
        connected = [0]
        tasks: list[asyncio.Task[None]] = []
        loop = asyncio.get_running_loop()
        while True:
            message = await loop.run_in_executor(None, conn.recv)
            if message == "stop":
                stop.set()
                await asyncio.gather(*tasks, return_exceptions=True)
                conn.send(("stopped", 0))
                return
            if message == "count":
                conn.send(("count", connected[0]))
                continue
            tokens: list[str] = message

            async def one(token: str, limit: asyncio.Semaphore) -> bool:
                async with limit:
                    for attempt in range(5):  # as a real agent, again after a refusal
                        try:
                            key, cert = await enroll(enroll_address, ca, token)
                            break
                        except grpc.aio.AioRpcError:
                            if attempt == 4:
                                return False  # counted: the step reports it
                            await asyncio.sleep(1 + attempt)
                tasks.append(
                    asyncio.create_task(keep_connected(address, ca, key, cert, connected, stop))
                )
                return True

            started = time.monotonic()
            limit = asyncio.Semaphore(8)
            enrolled = await asyncio.gather(*(one(t, limit) for t in tokens))
            conn.send(("enrolled", (time.monotonic() - started, enrolled.count(False))))

    asyncio.run(run())


async def make_servers(plane_url: str, key: str, count: int) -> list[tuple[str, str]]:
    """``count`` manual servers of a new tenant: (server id, join token) each."""
    headers = {"Authorization": f"Bearer {key}"}
    limit = asyncio.Semaphore(16)
    async with httpx.AsyncClient(base_url=plane_url, headers=headers, timeout=60) as http:
        tenant = (
            await http.post("/api/v1/tenants", json={"name": f"fleet-{time.time_ns()}"})
        ).json()

        async def one(i: int) -> tuple[str, str]:
            async with limit:
                server = (
                    await http.post(
                        "/api/v1/servers",
                        json={
                            "name": f"sim-{time.time_ns()}-{i}",
                            "tenant_id": tenant["id"],
                            "provider": "manual",
                            "mail_stack": "none",
                        },
                    )
                ).json()
                join = (await http.post(f"/api/v1/servers/{server['id']}/join-tokens")).json()
                return str(server["id"]), str(join["token"])

        return await asyncio.gather(*(one(i) for i in range(count)))


@dataclass
class Plane:
    """The control plane as the benchmark sees it: one replica, or two behind HAProxy."""

    url: str
    admin_key: str
    replicas: list[ControlPlane]

    @property
    def pgids(self) -> list[int]:
        return [r.process.process.pid for r in self.replicas if r.process is not None]

    def output(self) -> list[str]:
        return [line for r in self.replicas for line in r.output()]


@contextlib.contextmanager
def planes(
    tmp: Path, bao: DevOpenBao, database_url: str, replicas: int, env: dict[str, str]
) -> Iterator[Plane]:
    if replicas == 1:
        with control_plane(tmp, bao, database_url, **env) as one:
            yield Plane(one.url, one.admin_key, [one])
        return
    binds = loopback_binds()
    env = {
        **env,
        "MAILFLEET_GATEWAY_ADVERTISE_ADDR": binds.link,
        "MAILFLEET_ENROLL_ADVERTISE_ADDR": binds.enroll,
    }
    started: list[ControlPlane] = []
    try:
        for number in range(replicas):
            (tmp / f"r{number}").mkdir()
            started.append(
                ControlPlane(control_plane_env(tmp / f"r{number}", bao, database_url, **env))
            )
            started[-1].start(bootstrap=number == 0)  # the first alone migrates
        key = started[0].admin_key
        for replica in started:
            replica.admin_key = key
            replica.http.headers["Authorization"] = f"Bearer {key}"
        backends = [
            Replica(r.env["MAILFLEET_API_ADDR"], r.env["MAILFLEET_GRPC_ADDR"],
                    r.env["MAILFLEET_ENROLL_ADDR"])
            for r in started
        ]  # fmt: skip
        with running_haproxy(binds, backends, tmp / "haproxy.log"):
            yield Plane(f"http://{binds.api}", key, started)
    finally:
        if started:
            started[0].revoke_admin_key()
        for replica in started:
            replica.stop()
            replica.http.close()


async def ended_once(database_url: str, since: float) -> dict[str, Any]:
    """The pings queued since ``since``, by state: each is one row that a guarded update
    settles once (``state`` not yet final), so every ping that ended ended once; anything
    but ``succeeded`` here is a ping that did not (or not well). ``deliveries``: the times
    they were sent to agents (more than the pings: re-sent after a reconnection)."""
    conn = await asyncpg.connect(database_url.replace("+asyncpg", ""), timeout=10)
    try:
        rows = await conn.fetch(
            "SELECT state, count(*) AS n, sum(attempts) AS sent FROM commands"
            " WHERE kind = 'ping' AND created_at >= to_timestamp($1) GROUP BY state",
            since,
        )
    finally:
        await conn.close()
    return {
        "ping_states": {str(row["state"]): int(row["n"]) for row in rows},
        "deliveries": sum(int(row["sent"] or 0) for row in rows),
    }


FIGURES = {
    "dispatch": "mailfleet_command_dispatch_seconds",  # queued (any replica) -> sent
    "agent_round_trip": "mailfleet_command_round_trip_seconds",  # sent -> report stored
}


def plane_figures(plane: Plane) -> dict[str, list[float]]:
    """Every replica's /metrics summed: each histogram's [sum, count]."""
    totals = {name: [0.0, 0.0] for name in FIGURES}
    for replica in plane.replicas:
        text = replica.http.get("/metrics").text
        for name, metric in FIGURES.items():
            for i, part in enumerate(("sum", "count")):
                found = re.search(rf"^{metric}_{part} (\S+)$", text, re.MULTILINE)
                totals[name][i] += float(found.group(1)) if found else 0.0
    return totals


def periodic_job_totals(plane: Plane) -> dict[str, list[float]]:
    """Every replica's periodic job timings summed: per job, [seconds, rounds]."""
    totals: dict[str, list[float]] = {}
    pattern = re.compile(
        r'^mailfleet_periodic_job_seconds_(sum|count)\{name="([^"]+)"\} (\S+)$', re.M
    )
    for replica in plane.replicas:
        for part, job, value in pattern.findall(replica.http.get("/metrics").text):
            totals.setdefault(job, [0.0, 0.0])[0 if part == "sum" else 1] += float(value)
    return totals


def slowest_periodic_jobs(
    before: dict[str, list[float]], after: dict[str, list[float]], top: int = 6
) -> dict[str, dict[str, float]]:
    """The periodic jobs that took the most wall time over the window (their rounds run on
    the gateway's event loop, so a long one shows in the round trips' tail)."""
    spent = {
        job: (seconds - before.get(job, [0.0, 0.0])[0], rounds - before.get(job, [0.0, 0.0])[1])
        for job, (seconds, rounds) in after.items()
    }
    slowest = sorted(spent.items(), key=lambda item: item[1][0], reverse=True)[:top]
    return {
        job: {"rounds": int(rounds), "mean_ms": round(1000 * seconds / rounds, 1)}
        for job, (seconds, rounds) in slowest
        if rounds
    }


def where_time_went(
    before: dict[str, list[float]], after: dict[str, list[float]]
) -> dict[str, Any]:
    """Mean milliseconds per part of the round trip over the window, from the replicas' own
    histograms (every command kind: the features' periodic ones too, few beside the pings)."""
    means: dict[str, Any] = {}
    for name in FIGURES:
        total, count = (a - b for a, b in zip(after[name], before[name], strict=True))
        means[f"{name}_mean_ms"] = round(1000 * total / count, 1) if count else None
    return means


def pin(pid: int, cpu: int) -> None:
    """Every thread of ``pid`` onto one core (threads made later inherit it)."""
    subprocess.run(["taskset", "-a", "-cp", str(cpu), str(pid)], check=True, capture_output=True)


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU of every live process in the group (``serve`` and its children)."""
    ticks = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[2]) == pgid:  # fields after the name: state ppid pgrp … utime stime
            ticks += int(fields[11]) + int(fields[12])
    return ticks / CLOCK_TICKS


def group_wait_seconds(pgid: int) -> float:
    """Time the group's threads were ready to run but waited for a core (schedstat's
    run-queue wait): high when other work on the plane's core starves it, whatever the
    plane's own CPU use says."""
    waited = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as stat:
                if int(stat.read().rsplit(")", 1)[1].split()[2]) != pgid:
                    continue
            for task in os.scandir(f"/proc/{entry.name}/task"):
                with open(f"{task.path}/schedstat") as schedstat:
                    waited += int(schedstat.read().split()[1])
        except OSError:
            continue  # gone meanwhile, or no schedstat
    return waited / 1e9


def spread(server_ids: list[str], count: int) -> list[str]:
    """``count`` targets over the whole fleet: every server once before any twice."""
    targets: list[str] = []
    while len(targets) < count:
        targets += random.sample(server_ids, len(server_ids))
    return targets[:count]


def percentiles(latencies: list[float]) -> dict[str, float] | None:
    if not latencies:
        return None
    ordered = sorted(latencies)

    def pct(q: float) -> float:
        return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)

    return {"p50": pct(0.5), "p99": pct(0.99), "mean": round(1000 * statistics.mean(ordered), 1)}


async def ping_commands(
    plane_url: str, key: str, targets: list[str], window: float
) -> dict[str, Any]:
    """Send the pings evenly over the window; each one's round trip until it succeeded."""
    headers = {"Authorization": f"Bearer {key}"}
    latencies: list[float] = []
    errors: dict[str, int] = {}  # what went wrong, and how often
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=200)
    async with httpx.AsyncClient(
        base_url=plane_url, headers=headers, timeout=60, limits=limits
    ) as http:

        async def ping(server_id: str) -> None:
            started = time.monotonic()
            try:
                posted = await http.post(
                    f"/api/v1/servers/{server_id}/commands", json={"kind": "ping"}
                )
            except httpx.HTTPError as exc:  # the plane did not answer in time: a failure
                errors[f"POST {type(exc).__name__}"] = (
                    errors.get(f"POST {type(exc).__name__}", 0) + 1
                )
                return
            if posted.status_code != 201:
                errors[f"POST {posted.status_code}"] = (
                    errors.get(f"POST {posted.status_code}", 0) + 1
                )
                return
            path = f"/api/v1/servers/{server_id}/commands/{posted.json()['id']}"
            state = "queued"
            while time.monotonic() - started < 30:  # long poll: answered when it settles
                try:
                    polled = await http.get(path, params={"wait_seconds": 10})
                except httpx.HTTPError:
                    continue
                if polled.status_code != 200:
                    errors[f"GET {polled.status_code}"] = (
                        errors.get(f"GET {polled.status_code}", 0) + 1
                    )
                    await asyncio.sleep(0.1)
                    continue
                state = polled.json()["state"]
                if state == "succeeded":
                    latencies.append(time.monotonic() - started)
                    return
                if state in {"failed", "timed_out", "cancelled"}:
                    break
            errors[state] = errors.get(state, 0) + 1

        t0 = time.monotonic()
        pings = []
        for i, server_id in enumerate(targets):
            await asyncio.sleep(max(0.0, t0 + i * window / len(targets) - time.monotonic()))
            pings.append(asyncio.create_task(ping(server_id)))
        await asyncio.gather(*pings)
    return {
        "commands": len(latencies),
        "command_failures": len(targets) - len(latencies),
        "command_errors": errors,
        "servers_commanded": len(set(targets)),
        "command_round_trip_ms": percentiles(latencies),
    }


async def stored_samples(database_url: str, start: float, end: float) -> int:
    """Samples in PostgreSQL taken by the agents between two wall-clock times."""
    conn = await asyncpg.connect(database_url.replace("+asyncpg", ""), timeout=10)
    try:
        count = await conn.fetchval(
            "SELECT count(*) FROM metric_samples"
            " WHERE sampled_at >= to_timestamp($1) AND sampled_at < to_timestamp($2)",
            start,
            end,
        )
    finally:
        await conn.close()
    return int(count)


def cpu_figures(used: float, agents: int, seconds: float) -> dict[str, float]:
    cores = used / seconds
    return {"cores": round(cores, 3), "per_1000_agents": round(cores * 1000 / agents, 3)}


def planes_cpu_seconds(plane: Plane) -> float:
    return sum(group_cpu_seconds(pgid) for pgid in plane.pgids)


def planes_wait_seconds(plane: Plane) -> float:
    return sum(group_wait_seconds(pgid) for pgid in plane.pgids)


def measure_step(
    plane: Plane, database_url: str, server_ids: list[str], args: argparse.Namespace
) -> dict[str, Any]:
    """The idle window, then the command window; samples counted over both."""
    agents = len(server_ids)
    wall_start = time.time()
    cpu, waited, t0 = planes_cpu_seconds(plane), planes_wait_seconds(plane), time.monotonic()
    print(f"idle start: {agents} agents", flush=True)
    time.sleep(args.idle)
    idle = cpu_figures(planes_cpu_seconds(plane) - cpu, agents, time.monotonic() - t0)
    idle["waiting_for_the_core"] = round((planes_wait_seconds(plane) - waited) / args.idle, 3)
    cpu, waited, t1 = planes_cpu_seconds(plane), planes_wait_seconds(plane), time.monotonic()
    targets = spread(server_ids, args.commands)
    print(f"commands start: {agents} agents", flush=True)
    commands_from, figures = time.time(), plane_figures(plane)
    jobs_before = periodic_job_totals(plane)
    pings = asyncio.run(ping_commands(plane.url, plane.admin_key, targets, args.window))
    busy = cpu_figures(planes_cpu_seconds(plane) - cpu, agents, time.monotonic() - t1)
    busy["waiting_for_the_core"] = round(
        (planes_wait_seconds(plane) - waited) / (time.monotonic() - t1), 3
    )
    wall_end = time.time()
    pings["plane_side"] = where_time_went(figures, plane_figures(plane))
    pings["plane_side"]["slowest_periodic_jobs"] = slowest_periodic_jobs(
        jobs_before, periodic_job_totals(plane)
    )
    pings |= asyncio.run(ended_once(database_url, commands_from))
    time.sleep(min(5.0, args.window))  # batches in flight at the end are stored meanwhile
    stored = asyncio.run(stored_samples(database_url, wall_start, wall_end))
    expected = agents * (wall_end - wall_start) / args.metrics_seconds
    return {
        "idle_seconds": round(t1 - t0, 1),
        "window_seconds": round(wall_end - wall_start - (t1 - t0), 1),
        "control_plane_cpu": {"idle": idle, "commands": busy},
        **pings,
        "samples": {
            "stored": stored,
            "expected": round(expected),
            "stored_share": round(stored / expected, 3) if expected else None,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_out_argument(parser, "agent_fleet")
    parser.add_argument("--sizes", default="500,1000")
    parser.add_argument("--idle", type=float, default=30.0, help="seconds without commands")
    parser.add_argument("--window", type=float, default=60.0, help="seconds of commands")
    parser.add_argument("--commands", type=int, default=1000, help="ping commands per step")
    parser.add_argument(
        "--metrics-seconds", type=float, default=METRICS_SECONDS, help="agents' batch interval"
    )
    parser.add_argument("--replicas", type=int, choices=(1, 2), default=1,
                        help="serve replicas; 2: behind HAProxy")  # fmt: skip
    parser.add_argument("--note", default="", help="the conditions of the run, kept with it")
    args = parser.parse_args()
    if args.replicas > 1 and haproxy_binary() is None:
        parser.error("--replicas 2 needs haproxy (make system-deps)")
    sizes = [int(s) for s in args.sizes.split(",")]
    pinned = (os.cpu_count() or 1) >= 2
    if pinned:  # OpenBao and the workers start from here and inherit it
        os.sched_setaffinity(0, {SIMULATOR_CPU})
    results: list[dict[str, Any]] = []
    database_url = asyncio.run(create_database("mailfleet_bench"))
    shipped = {
        "MAILFLEET_HEARTBEAT_INTERVAL_SECONDS": str(HEARTBEAT_SECONDS),
        "MAILFLEET_METRICS_INTERVAL_SECONDS": str(args.metrics_seconds),
        "MAILFLEET_AGENT_UNKNOWN_AFTER_SECONDS": "40",
        "MAILFLEET_LOG_LEVEL": "warning",
    }
    try:
        with (
            tempfile.TemporaryDirectory() as tmp_dir,
            dev_openbao() as bao,
            planes(Path(tmp_dir), bao, database_url, args.replicas, shipped) as plane,
        ):
            for pgid in plane.pgids:
                if pinned:
                    pin(pgid, PLANE_CPU)
                print(f"control plane pid {pgid}", flush=True)
            headers = {"Authorization": f"Bearer {plane.admin_key}"}
            with httpx.Client(base_url=plane.url, headers=headers, timeout=30) as http:
                one = http.post("/api/v1/tenants", json={"name": "pin"}).json()
                server = http.post(
                    "/api/v1/servers",
                    json={"name": "pin", "tenant_id": one["id"], "mail_stack": "none"},
                ).json()
                join = http.post(f"/api/v1/servers/{server['id']}/join-tokens").json()
            pipes = []
            for _ in range(WORKERS):
                parent, child = mp.Pipe()
                process = mp.Process(
                    target=worker,
                    args=(child, join["gateway_address"], join["enroll_address"], join["ca_pin"]),
                )
                process.start()
                pipes.append((parent, process))
            server_ids: list[str] = []
            never_enrolled = 0
            try:
                for size in sizes:
                    started = time.monotonic()
                    made = asyncio.run(
                        make_servers(plane.url, plane.admin_key, size - len(server_ids))
                    )
                    server_ids += [server_id for server_id, _ in made]
                    tokens = [token for _, token in made]
                    for i, (pipe, _) in enumerate(pipes):
                        pipe.send(tokens[i::WORKERS])
                    answers = [pipe.recv()[1] for pipe, _ in pipes]
                    enroll_seconds = max(seconds for seconds, _ in answers)
                    enroll_failures = sum(failed for _, failed in answers)
                    never_enrolled += enroll_failures
                    connected = 0
                    deadline = time.monotonic() + 300
                    while time.monotonic() < deadline:
                        for pipe, _ in pipes:
                            pipe.send("count")
                        connected = sum(pipe.recv()[1] for pipe, _ in pipes)
                        if connected >= size - never_enrolled:
                            break
                        time.sleep(1)
                    setup = time.monotonic() - started
                    time.sleep(min(args.metrics_seconds, args.idle))  # let batches settle in
                    row = {
                        "agents": size,
                        "connected": connected,
                        "setup_seconds": round(setup, 1),
                        "enroll_seconds": round(enroll_seconds, 1),
                        "enroll_failures": enroll_failures,
                        **measure_step(plane, database_url, server_ids, args),
                    }
                    # what the plane said when something failed (its log is kept in memory)
                    row["plane_errors"] = [
                        line[:300] for line in plane.output() if "ERROR" in line or "Error:" in line
                    ][-5:]
                    results.append(row)
                    print(json.dumps(row), flush=True)
                    write(args, pinned, results)  # kept if a later, larger step fails
            finally:
                for pipe, process in pipes:
                    pipe.send("stop")
                    pipe.recv()
                    process.join(timeout=30)
                    if process.is_alive():
                        process.kill()
    finally:
        asyncio.run(drop_database(database_url))
    write(args, pinned, results)


def write(args: argparse.Namespace, pinned: bool, results: list[dict[str, Any]]) -> None:
    write_result(
        args.out,
        {
            "benchmark": "agent_fleet",
            "target": {"agents": 10_000, "metrics_interval_seconds": 15, "p99_ms": 250},
            "metrics_interval_seconds": args.metrics_seconds,
            "workers": WORKERS,
            "replicas": args.replicas,
            "cpus": os.cpu_count(),
            "pinned": {"control_plane": PLANE_CPU, "simulator": SIMULATOR_CPU} if pinned else None,
            "commands_per_step": args.commands,
            "note": args.note,
            "load_average": os.getloadavg(),
            "steps": results,
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    )


if __name__ == "__main__":
    main()
