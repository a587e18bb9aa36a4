"""Provisioning wall time on the local provider: ``POST /api/v1/servers`` → ``ready``.

A real ``mailfleet serve`` (PostgreSQL by default, or SQLite) with the local provider on;
each run orders one server, follows it to ``ready`` through the API, records the time of
every step from its events, then deletes it and waits until it is gone. Needs root.

Writes benchmarks/results/provision.json.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import itertools
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.harness import add_out_argument, write_result  # noqa: E402
from tests.support.netns import netns_unavailable, pick_subnet  # noqa: E402
from tests.support.openbao import dev_openbao  # noqa: E402
from tests.support.postgres import create_database, drop_database  # noqa: E402
from tests.support.stack import ControlPlane, control_plane  # noqa: E402

STEPS = ("requested", "creating", "booting", "enrolling", "ready")


def local_provider_env(state_dir: Path) -> dict[str, str]:
    prefix = "b" + secrets.token_hex(2)
    subnet: ipaddress.IPv4Network = pick_subnet()
    return {
        "MAILFLEET_LOCAL_PROVIDER": "1",
        "MAILFLEET_LOCAL_PROVIDER_DIR": str(state_dir),
        "MAILFLEET_LOCAL_PROVIDER_PREFIX": prefix,
        "MAILFLEET_LOCAL_PROVIDER_BRIDGE": f"{prefix}br",
        "MAILFLEET_LOCAL_PROVIDER_BRIDGE_ADDRESS": f"{subnet.network_address + 1}/24",
        "MAILFLEET_LOCAL_PROVIDER_POOL": f"{subnet.network_address + 16}/28",
        # the shipped defaults, spelled out: the benchmark measures what users get
        "MAILFLEET_PROVISION_POLL_SECONDS": "2",
        "MAILFLEET_HEARTBEAT_INTERVAL_SECONDS": "10",
        "MAILFLEET_METRICS_INTERVAL_SECONDS": "15",
    }


def one_run(plane: ControlPlane, tenant_id: str, n: int, limit: float) -> dict[str, Any]:
    body = {
        "name": f"bench-{n}",
        "provider": "local",
        "region": "local",
        "plan": "local-small",
        "mail_stack": "none",  # MailU needs a Docker engine, which this machine lacks
    }
    started = time.monotonic()
    server = plane.api("POST", "/api/v1/servers", 201, json={**body, "tenant_id": tenant_id})
    path = f"/api/v1/servers/{server['id']}"
    while (state := plane.api("GET", path)["state"]) != "ready":
        if state == "failed" or time.monotonic() - started > limit:
            raise SystemExit(f"run {n}: {plane.api('GET', path)}")
        time.sleep(0.05)
    wall = time.monotonic() - started
    events = plane.api("GET", f"{path}/events")["items"]
    entered = {e["state"]: datetime.fromisoformat(e["at"]) for e in events if e["kind"] == "state"}
    steps = {
        f"{a}_seconds": round((entered[b] - entered[a]).total_seconds(), 3)
        for a, b in itertools.pairwise(STEPS)
    }
    deleting = time.monotonic()
    plane.api("DELETE", path, 202)
    while plane.http.get(path).status_code != 404:
        if time.monotonic() - deleting > limit:
            raise SystemExit(f"run {n}: not deleted")
        time.sleep(0.05)
    return {
        "to_ready_seconds": round(wall, 3),
        "deprovision_seconds": round(time.monotonic() - deleting, 3),
        **steps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_out_argument(parser, "provision")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--database", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--limit", type=float, default=300.0, help="seconds per run at most")
    args = parser.parse_args()
    reason = netns_unavailable()
    if reason:
        raise SystemExit(reason)
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="mf-bench-provision-") as tmp_dir:
        tmp = Path(tmp_dir)
        if args.database == "postgresql":
            database_url = asyncio.run(create_database("mailfleet_bench_provision"))
        else:
            database_url = f"sqlite+aiosqlite:///{tmp / 'bench.db'}"
        try:
            env = local_provider_env(tmp / "local-provider")
            with dev_openbao() as bao, control_plane(tmp, bao, database_url, **env) as plane:
                tenant = plane.api("POST", "/api/v1/tenants", 201, json={"name": "bench"})
                for n in range(args.runs):
                    runs.append(one_run(plane, tenant["id"], n, args.limit))
                    print(json.dumps(runs[-1]), flush=True)
            os.system(f"ip link delete {env['MAILFLEET_LOCAL_PROVIDER_BRIDGE']} 2>/dev/null")  # noqa: S605
        finally:
            if args.database == "postgresql":
                asyncio.run(drop_database(database_url))
    walls = [r["to_ready_seconds"] for r in runs]
    result = {
        "benchmark": "provision",
        "provider": "local",
        "database": args.database,
        "runs": runs,
        "median_to_ready_seconds": statistics.median(walls),
        "max_to_ready_seconds": max(walls),
        "median_deprovision_seconds": statistics.median(r["deprovision_seconds"] for r in runs),
        "target_to_ready_seconds": 60,
        "note": "steps so far: requested → creating → booting → enrolling → ready "
        "(MailU, DNS and TLS steps come with their issues)",
    }
    write_result(args.out, result)
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2))


if __name__ == "__main__":
    main()
