"""Many agents against one control plane on PostgreSQL: connections, ingest, command latency.

Simulated agents are lightweight clients in a few worker processes that speak the real
protocol over real mutual TLS: they enroll with join tokens (Vault signs every certificate),
hold one stream each, heartbeat every 10 s, send a metric batch every 15 s and answer pings.
For each fleet size the driver measures, over a window, the stored-sample rate and the
round trip of ping commands (API POST → result stored, observed by polling the API).

    .venv/bin/python benchmarks/agent_fleet.py --sizes 100,1000,2500 [--window 60]

Writes benchmarks/results/agent_fleet.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import httpx
from google.protobuf.timestamp_pb2 import Timestamp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.identity import fetch_pinned_ca, new_key_and_csr  # noqa: E402
from benchmarks.harness import add_out_argument, write_result  # noqa: E402
from mailfleet.agent.v1 import agent_pb2, agent_pb2_grpc  # noqa: E402
from tests.support.openbao import dev_openbao  # noqa: E402
from tests.support.postgres import create_database, drop_database  # noqa: E402
from tests.support.stack import control_plane  # noqa: E402

HEARTBEAT_SECONDS = 10.0
METRICS_SECONDS = 15.0
WORKERS = 2


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


async def simulated_agent(
    address: str, ca: bytes, key: bytes, cert: bytes, connected: list[int], stop: asyncio.Event
) -> None:
    credentials = grpc.ssl_channel_credentials(ca, key, cert)
    async with grpc.aio.secure_channel(address, credentials) as channel:
        call = agent_pb2_grpc.AgentLinkStub(channel).Connect()
        await call.write(
            agent_pb2.AgentMessage(
                hello=agent_pb2.Hello(
                    agent_version="sim", capabilities=["heartbeat", "metrics", "commands"]
                )
            )
        )
        reply = await call.read()
        assert isinstance(reply, agent_pb2.ControlMessage) and reply.HasField("hello")
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
            next_beat = time.monotonic() + random.uniform(0, HEARTBEAT_SECONDS)
            next_batch = time.monotonic() + random.uniform(0, METRICS_SECONDS)
            while True:
                now = time.monotonic()
                if now >= next_beat:
                    await call.write(agent_pb2.AgentMessage(heartbeat=agent_pb2.Heartbeat()))
                    next_beat += HEARTBEAT_SECONDS
                if now >= next_batch:
                    sequence += 1
                    await call.write(
                        agent_pb2.AgentMessage(
                            metrics=agent_pb2.MetricBatch(sequence=sequence, samples=[sample()])
                        )
                    )
                    next_batch += METRICS_SECONDS
                wait = max(0.0, min(next_beat, next_batch) - time.monotonic())
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
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        connected[0] -= 1


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

            async def one(token: str, limit: asyncio.Semaphore) -> None:
                async with limit:
                    key, cert = await enroll(enroll_address, ca, token)
                tasks.append(
                    asyncio.create_task(simulated_agent(address, ca, key, cert, connected, stop))
                )

            started = time.monotonic()
            limit = asyncio.Semaphore(8)
            await asyncio.gather(*(one(t, limit) for t in tokens))
            conn.send(("enrolled", time.monotonic() - started))

    asyncio.run(run())


async def make_servers(plane_url: str, key: str, count: int) -> list[str]:
    headers = {"Authorization": f"Bearer {key}"}
    limit = asyncio.Semaphore(16)
    async with httpx.AsyncClient(base_url=plane_url, headers=headers, timeout=60) as http:
        tenant = (
            await http.post("/api/v1/tenants", json={"name": f"fleet-{time.time_ns()}"})
        ).json()

        async def one(i: int) -> str:
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
                return str(join["token"])

        return await asyncio.gather(*(one(i) for i in range(count)))


async def measure(
    plane_url: str, key: str, server_ids: list[str], window: float, rate: float
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=plane_url, headers=headers, timeout=60) as http:

        async def scrape() -> float:
            text = (await http.get("/metrics")).text
            return sum(
                float(line.split()[-1])
                for line in text.splitlines()
                if line.startswith("mailfleet_metric_samples_total")
            )

        before, t0 = await scrape(), time.monotonic()
        latencies: list[float] = []
        failures = 0

        async def ping(server_id: str) -> None:
            nonlocal failures
            started = time.monotonic()
            command = (
                await http.post(f"/api/v1/servers/{server_id}/commands", json={"kind": "ping"})
            ).json()
            path = f"/api/v1/servers/{server_id}/commands/{command['id']}"
            while time.monotonic() - started < 30:  # long poll: answered when it settles
                state = (await http.get(path, params={"wait_seconds": 10})).json()["state"]
                if state == "succeeded":
                    latencies.append(time.monotonic() - started)
                    return
                if state in {"failed", "timed_out", "cancelled"}:
                    break
            failures += 1

        pings = []
        while time.monotonic() - t0 < window:
            pings.append(asyncio.create_task(ping(random.choice(server_ids))))
            await asyncio.sleep(1 / rate)
        await asyncio.gather(*pings)
        elapsed = time.monotonic() - t0
        ingested = await scrape() - before
    latencies.sort()

    def pct(q: float) -> float:
        return round(1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))], 1)

    return {
        "window_seconds": round(elapsed, 1),
        "ingest_samples_per_second": round(ingested / elapsed, 1),
        "commands": len(latencies),
        "command_failures": failures,
        "command_round_trip_ms": {
            "p50": pct(0.5),
            "p99": pct(0.99),
            "mean": round(1000 * statistics.mean(latencies), 1),
        }
        if latencies
        else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_out_argument(parser, "agent_fleet")
    parser.add_argument("--sizes", default="100,1000,2500")
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=5.0, help="pings per second while measuring")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results: list[dict[str, Any]] = []
    database_url = asyncio.run(create_database("mailfleet_bench"))
    shipped = {
        "MAILFLEET_HEARTBEAT_INTERVAL_SECONDS": str(HEARTBEAT_SECONDS),
        "MAILFLEET_METRICS_INTERVAL_SECONDS": str(METRICS_SECONDS),
        "MAILFLEET_AGENT_UNKNOWN_AFTER_SECONDS": "40",
        "MAILFLEET_LOG_LEVEL": "warning",
    }
    try:
        with (
            tempfile.TemporaryDirectory() as tmp_dir,
            dev_openbao() as bao,
            control_plane(Path(tmp_dir), bao, database_url, **shipped) as plane,
        ):
            one = plane.api("POST", "/api/v1/tenants", 201, json={"name": "pin"})
            server = plane.api(
                "POST",
                "/api/v1/servers",
                201,
                json={"name": "pin", "tenant_id": one["id"], "mail_stack": "none"},
            )
            join = plane.api("POST", f"/api/v1/servers/{server['id']}/join-tokens", 201)
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
            total = 0
            try:
                for size in sizes:
                    add = size - total
                    started = time.monotonic()
                    tokens = asyncio.run(make_servers(plane.url, plane.admin_key, add))
                    for i, (pipe, _) in enumerate(pipes):
                        pipe.send(tokens[i::WORKERS])
                    enroll_seconds = max(pipe.recv()[1] for pipe, _ in pipes)
                    total = size
                    connected = 0
                    deadline = time.monotonic() + 300
                    while time.monotonic() < deadline:
                        for pipe, _ in pipes:
                            pipe.send("count")
                        connected = sum(pipe.recv()[1] for pipe, _ in pipes)
                        if connected >= size:
                            break
                        time.sleep(1)
                    servers = plane.api("GET", "/api/v1/servers", params={"limit": 500})
                    server_ids = [s["id"] for s in servers["items"] if s["status"] == "online"]
                    time.sleep(min(METRICS_SECONDS, args.window))  # let batches settle in
                    row = {
                        "agents": size,
                        "connected": connected,
                        "setup_seconds": round(time.monotonic() - started, 1),
                        "enroll_seconds": round(enroll_seconds, 1),
                        **asyncio.run(
                            measure(plane.url, plane.admin_key, server_ids, args.window, args.rate)
                        ),
                    }
                    row["expected_ingest_samples_per_second"] = round(size / METRICS_SECONDS, 1)
                    results.append(row)
                    print(json.dumps(row), flush=True)
            finally:
                for pipe, process in pipes:
                    pipe.send("stop")
                    pipe.recv()
                    process.join(timeout=30)
                    if process.is_alive():
                        process.kill()
    finally:
        asyncio.run(drop_database(database_url))
    write_result(
        args.out,
        {
            "benchmark": "agent_fleet",
            "target": {"agents": 10_000, "metrics_interval_seconds": 15, "p99_ms": 250},
            "workers": WORKERS,
            "cpus": os.cpu_count(),
            "steps": results,
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    )


if __name__ == "__main__":
    main()
