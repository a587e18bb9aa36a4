"""The mail-port health probes over a fleet: N servers on their own loopback addresses, each
probed on SMTP 25 (STARTTLS), 465 (implicit TLS), 587 (STARTTLS) and IMAP 993 (TLS) with
control_plane.health.probes.probe_mail_ports, at the health sweep's concurrency.

One asyncio responder in a child process answers for every server: it listens on four ports
of each 127.64.x.y address (loopback only) with one certificate from a test CA. The prober
runs in this process, so its CPU time (``time.process_time`` around the sweep) is the
prober's alone; the responder's is read from the child. Targets (issue 14): a 1,000-server
sweep in at most 15 s, and 10,000 servers every 300 s in at most 50 % of one core.

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
import multiprocessing as mp
import os
import random
import resource
import ssl
import statistics
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.harness import add_out_argument, write_result  # noqa: E402
from control_plane.health.probes import MailPorts, probe_mail_ports, tls_context  # noqa: E402
from control_plane.settings import Settings  # noqa: E402
from tests.support.mail_ports import Leaf, TestCA  # noqa: E402
from tests.support.ports import free_port  # noqa: E402

FIRST_ADDRESS = ipaddress.IPv4Address("127.64.0.1")
DOMAIN = "bench.mailfleet.test"
FLEET = 10_000
INTERVAL_SECONDS = 300.0
TARGET_SWEEP_SECONDS = 15.0
TARGET_SHARE_OF_ONE_CORE = 0.5
EHLO = b"250-mx.%s\r\n250-PIPELINING\r\n250-SIZE 52428800\r\n%s250 8BITMIME\r\n" % (
    DOMAIN.encode(),
    b"%s",
)


def address(index: int) -> str:
    return str(FIRST_ADDRESS + index)


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
    servers: int, silent: range, ports: MailPorts, leaf: Leaf, pipe: Connection
) -> None:
    context = leaf.server_context()
    listeners: list[asyncio.Server] = []
    for index in silent:
        for port in (ports.smtp, ports.submissions, ports.submission, ports.imaps):
            listeners.append(
                await asyncio.start_server(_silent, address(index), port, reuse_address=True)
            )
    for index in range(servers):
        host = address(index)
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


def responder(servers: int, silent: range, ports: MailPorts, leaf: Leaf, pipe: Connection) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(_respond(servers, silent, ports, leaf, pipe))


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


def main() -> None:
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
    args = parser.parse_args()
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
        ours, theirs = mp.Pipe()
        child = mp.get_context("spawn").Process(
            target=responder, args=(args.servers, silent, ports, leaf, theirs), daemon=True
        )
        started = time.perf_counter()
        child.start()
        try:
            if not ours.poll(300) or ours.recv() != "ready":
                raise SystemExit("the responder did not start")
            listen_seconds = time.perf_counter() - started
            for n in range(args.runs):
                wall, cpu, counts = asyncio.run(
                    sweep(list(range(args.servers)), args.concurrency, args.timeout, context, ports)
                )
                ok = sum(v for k, v in counts.items() if k.endswith(":ok"))
                runs.append(
                    {
                        "wall_seconds": round(wall, 3),
                        "prober_cpu_seconds": round(cpu, 3),
                        "prober_cpu_ms_per_server": round(cpu / args.servers * 1000, 3),
                        "results_ok": ok,
                        "results": dict(sorted(counts.items())),
                    }
                )
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
            ours.send("stop")
            responder_usage = ours.recv() if ours.poll(60) else {}
        finally:
            child.join(30)
            if child.is_alive():
                child.kill()
                child.join(10)

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
        "responder_cpu_seconds_all_runs": round(responder_usage.get("cpu_seconds", 0.0), 2),
    }
    write_result(args.out, result)
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
