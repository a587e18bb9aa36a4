"""Fleet-wide DNS propagation check: 1,000 domains × 8 record sets on a real Knot primary and
secondary on loopback, checked with control_plane.dns.checker in one call.

The product goal: the whole fleet re-checkable well within a 5-minute health cycle. The zone
files are written before knotd starts (8,000 dynamic updates would measure knsupdate, not the
checker). Every run checks every record set on both nameservers; a last run adds a third
nameserver that never answers, to show that a dead server costs one round of timeouts rather
than one per record.

    .venv/bin/python benchmarks/dns_check.py [--domains 1000] [--runs 3] [--concurrency 64]

Writes benchmarks/results/dns_check.json.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import os
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import dns.asyncquery
import dns.exception
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rdtypes.ANY.SOA

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.harness import add_out_argument, write_result  # noqa: E402
from control_plane.dns.checker import CheckReport, Nameserver, check  # noqa: E402
from control_plane.dns.record import Record  # noqa: E402
from tests.support.knot import (  # noqa: E402
    HOST,
    KnotError,
    KnotServer,
    TsigKey,
    _new_primary,
    _new_secondary,
    _PortTaken,
    zone_text,
)
from tests.support.ports import free_port  # noqa: E402

RECORDS_PER_DOMAIN = 8
HEALTH_CYCLE_SECONDS = 300
START_ATTEMPTS = 3
READY_TIMEOUT = 120.0


def split_txt(text: str, size: int = 255) -> str:
    return " ".join(f'"{text[i : i + size]}"' for i in range(0, len(text), size))


def domain_records(domain: str) -> tuple[list[Record], list[str]]:
    """The 8 record sets of one mail domain, as desired and as zone-file lines."""
    seed = hashlib.sha256(domain.encode()).digest()
    key = base64.b64encode(b"".join(hashlib.sha256(seed + bytes([i])).digest() for i in range(9)))
    dkim = "v=DKIM1; k=rsa; p=" + key.decode()  # as long as a 2048-bit key: two strings
    n = int.from_bytes(seed[:2], "big")
    v4, v6 = f"192.0.2.{n % 250 + 1}", f"2001:db8::{n:x}"
    texts = {
        domain: "v=spf1 mx -all",
        f"mf2026._domainkey.{domain}": dkim,
        f"_dmarc.{domain}": f"v=DMARC1; p=reject; rua=mailto:dmarc@{domain}",
        f"_mta-sts.{domain}": f"v=STSv1; id={n}",
        f"_smtp._tls.{domain}": f"v=TLSRPTv1; rua=mailto:tls@{domain}",
    }
    desired = [
        Record(f"mx1.{domain}", "A", 300, (v4,), "mail-host"),
        Record(f"mx1.{domain}", "AAAA", 300, (v6,), "mail-host"),
        Record(domain, "MX", 3600, (f"10 mx1.{domain}.",), "mx"),
        *(Record(name, "TXT", 3600, (split_txt(text),)) for name, text in texts.items()),
    ]
    lines = [
        f"mx1 300 A {v4}",
        f"mx1 300 AAAA {v6}",
        "@ 3600 MX 10 mx1",
        *(f"{name}. 3600 TXT {split_txt(text, 200)}" for name, text in texts.items()),
    ]
    assert len(desired) == RECORDS_PER_DOMAIN
    return desired, lines


async def serials(server: KnotServer, zones: Sequence[str]) -> list[int | None]:
    """Every zone's SOA serial on ``server`` (None: not loaded yet), 64 queries at a time."""
    slots = asyncio.Semaphore(64)

    async def one(zone: str) -> int | None:
        async with slots:
            query = dns.message.make_query(zone, "SOA", flags=0)
            try:
                response = await dns.asyncquery.udp(query, HOST, timeout=1.0, port=server.port)
            except (dns.exception.DNSException, OSError):
                return None
        if response.rcode() != dns.rcode.NOERROR or not response.answer:
            return None
        return int(next(iter(response.answer[0])).serial)

    return await asyncio.gather(*(one(zone) for zone in zones))


def wait_serials(server: KnotServer, zones: Sequence[str], what: str) -> float:
    """Poll (bounded in time and count) until every zone answers with serial 1."""
    started = time.monotonic()
    for _ in range(int(READY_TIMEOUT / 0.2) + 1):
        server.check_alive()
        if all(s == 1 for s in asyncio.run(serials(server, zones))):
            return time.monotonic() - started
        if time.monotonic() - started > READY_TIMEOUT:
            break
        time.sleep(0.2)
    raise KnotError(f"{what}: not every zone served within {READY_TIMEOUT} s:\n{server.log()}")


@contextlib.contextmanager
def knot_fleet(zones: dict[str, str]) -> Iterator[tuple[KnotServer, KnotServer, dict[str, float]]]:
    """A primary loading ``zones`` from files and a secondary that has transferred them all."""
    key = TsigKey.generate()
    for attempt in range(START_ATTEMPTS):
        with contextlib.ExitStack() as stack:
            secondary_port = free_port()
            primary = _new_primary(zones, key, free_port(), secondary_port)
            stack.callback(primary.stop)
            try:
                primary.start()
                timings = {"primary_load_seconds": wait_serials(primary, list(zones), "primary")}
                secondary = _new_secondary(primary, secondary_port)
                stack.callback(secondary.stop)
                secondary.start()
                timings["secondary_transfer_seconds"] = wait_serials(
                    secondary, list(zones), "secondary"
                )
            except _PortTaken:
                if attempt == START_ATTEMPTS - 1:
                    raise
                continue
            yield primary, secondary, timings
            return


def summary(report: CheckReport, wall: float) -> dict[str, Any]:
    return {
        "wall_seconds": round(wall, 3),
        "queries_sent": report.queries_sent,
        "query_budget": report.query_budget,
        "queries_per_second": round(report.queries_sent / wall),
        "propagated": report.propagated,
        "counts": report.counts,
    }


def run_check(
    desired: list[Record], servers: list[Nameserver], zones: list[str], **options: Any
) -> tuple[CheckReport, float]:
    streamed = 0

    def count(_result: object) -> None:
        nonlocal streamed
        streamed += 1

    started = time.monotonic()
    report = asyncio.run(check(desired, servers, zones=zones, on_progress=count, **options))
    wall = time.monotonic() - started
    assert streamed == sum(len(r.results) for r in report.records)
    assert report.queries_sent <= report.query_budget
    return report, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_out_argument(parser, "dns_check")
    parser.add_argument("--domains", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--sweep", default="16,64,256", help="concurrency values to try once")
    args = parser.parse_args()

    load_before = [round(x, 2) for x in os.getloadavg()]
    zones: dict[str, str] = {}
    desired: list[Record] = []
    for i in range(args.domains):
        domain = f"d{i:04d}.bench.test"
        records, lines = domain_records(domain)
        desired += records
        zones[domain + "."] = zone_text(domain, records=lines)
    zone_names = [z.rstrip(".") for z in zones]

    runs: list[dict[str, Any]] = []
    sweep: list[dict[str, Any]] = []
    with knot_fleet(zones) as (primary, secondary, timings):
        servers = [
            Nameserver("ns1.bench.test", HOST, primary.port),
            Nameserver("ns2.bench.test", HOST, secondary.port),
        ]
        for n in range(args.runs):
            report, wall = run_check(desired, servers, zone_names, concurrency=args.concurrency)
            runs.append(summary(report, wall))
            print(json.dumps({"run": n, **runs[-1]}), flush=True)
        for concurrency in (int(c) for c in args.sweep.split(",") if c):
            report, wall = run_check(desired, servers, zone_names, concurrency=concurrency)
            sweep.append({"concurrency": concurrency, **summary(report, wall)})
            print(json.dumps(sweep[-1]), flush=True)
        dead = Nameserver("ns3.bench.test", HOST, free_port())  # nothing listens there
        report, wall = run_check(
            desired, [*servers, dead], zone_names, concurrency=args.concurrency
        )
        degraded = {"timeout_seconds": 2.0, "retries": 1, **summary(report, wall)}
        print(json.dumps({"with_unresponsive_nameserver": degraded}), flush=True)

    walls = [r["wall_seconds"] for r in runs]
    median_wall = statistics.median(walls)
    result = {
        "benchmark": "dns_check",
        "domains": args.domains,
        "record_sets": len(desired),
        "nameservers": 2,
        "concurrency": args.concurrency,
        "cpus": os.cpu_count(),
        "load_average_before": load_before,  # the machine is shared: read figures with it
        "knot": "knotd on 127.0.0.1, 1 UDP worker each (tests/support/knot.py config)",
        **timings,
        "runs": runs,
        "median_wall_seconds": median_wall,
        "max_wall_seconds": max(walls),
        "median_queries_per_second": statistics.median(r["queries_per_second"] for r in runs),
        "all_matched": all(r["propagated"] for r in runs),
        "concurrency_sweep": sweep,
        "with_unresponsive_nameserver": degraded,
        "target_seconds": HEALTH_CYCLE_SECONDS,
        "domains_per_health_cycle_estimate": int(args.domains * HEALTH_CYCLE_SECONDS / max(walls)),
    }
    write_result(args.out, result)
    print(json.dumps({k: v for k, v in result.items() if k not in ("runs",)}, indent=2))


if __name__ == "__main__":
    main()
