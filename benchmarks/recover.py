"""Disaster recovery time (RTO) on the local provider: a VPS with a generated mail store is
backed up, destroyed, and rebuilt on a new one with ``POST /api/v1/servers/{id}/recover``.

A real ``mailfleet serve`` (PostgreSQL), real agents in network namespaces, real restic.
The mail store is ``--gigabytes`` of messages (4–96 KiB, unique, incompressible). The RTO is
what the recovery records: from the request to the new server serving with the data back
(provision + restore + finish + retire). Target: ≤ 15 min for 5 GB. Needs root.

Writes benchmarks/results/recover.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.harness import add_out_argument, write_result  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))

from backup import generate  # noqa: E402
from provision import local_provider_env  # noqa: E402

from tests.support.netns import kill_namespace, netns_unavailable  # noqa: E402
from tests.support.openbao import dev_openbao  # noqa: E402
from tests.support.postgres import create_database, drop_database  # noqa: E402
from tests.support.stack import ControlPlane, control_plane  # noqa: E402


def wait(plane: ControlPlane, path: str, done: Any, limit: float) -> dict[str, Any]:
    started = time.monotonic()
    while True:
        body = plane.api("GET", path)
        if done(body):
            return dict(body)
        if time.monotonic() - started > limit:
            raise SystemExit(f"{path}: not done within {limit:.0f} s: {body}")
        time.sleep(0.5)


def run(
    plane: ControlPlane, state_dir: Path, repo: Path, gigabytes: float, limit: float
) -> dict[str, Any]:
    tenant = plane.api("POST", "/api/v1/tenants", 201, json={"name": "bench-recover"})
    body = {
        "name": "lost",
        "provider": "local",
        "region": "local",
        "plan": "local-small",
        "mail_stack": "none",
        "tenant_id": tenant["id"],
    }
    server = plane.api("POST", "/api/v1/servers", 201, json=body)
    path = f"/api/v1/servers/{server['id']}"
    server = wait(plane, path, lambda s: s["state"] == "ready", limit)
    rootfs = state_dir / server["instance_id"] / "rootfs"
    started = time.monotonic()
    messages = generate(rootfs / "mailu" / "mail", int(gigabytes * 1024**3))
    size = sum(p.stat().st_size for p in messages)
    print(
        f"generated {len(messages)} messages, {size / 1024**3:.2f} GiB in "
        f"{time.monotonic() - started:.0f} s",
        flush=True,
    )
    plane.api("PUT", f"{path}/backup-policy", json={"repository_url": str(repo)})
    started = time.monotonic()
    listed = wait(plane, f"{path}/backups", lambda b: b["snapshots"], limit)
    backup_seconds = time.monotonic() - started
    print(f"backed up in {backup_seconds:.0f} s", flush=True)

    # Lose the VPS: its processes, network and disk.
    (record,) = [
        json.loads(p.read_text())
        for p in state_dir.glob("*/instance.json")
        if json.loads(p.read_text())["id"] == server["instance_id"]
    ]
    kill_namespace(record["namespace"])
    shutil.rmtree(rootfs / "mailu")

    recovery = plane.api("POST", f"{path}/recover", 202, json={})
    done = wait(
        plane,
        f"/api/v1/servers/{recovery['new_server_id']}/recovery",
        lambda r: r["state"] in ("done", "failed"),
        limit,
    )
    if done["state"] != "done":
        raise SystemExit(f"recovery failed: {done}")
    new = plane.api("GET", f"/api/v1/servers/{recovery['new_server_id']}")
    restored = state_dir / new["instance_id"] / "rootfs" / "mailu" / "mail"
    count = sum(1 for p in restored.rglob("*") if p.is_file())
    events = plane.api("GET", f"/api/v1/servers/{new['id']}/events")["items"]
    plane.api("DELETE", f"/api/v1/servers/{new['id']}", 202)
    return {
        "messages": len(messages),
        "bytes": size,
        "backup_seconds": round(backup_seconds, 1),
        "snapshot": listed["snapshots"][0]["short_id"],
        "rto_seconds": done["rto_seconds"],
        "restored_messages": count,
        "new_server_events": [(e["state"], e["message"]) for e in events][-8:],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_out_argument(parser, "recover")
    parser.add_argument("--gigabytes", type=float, default=5.0)
    parser.add_argument("--limit", type=float, default=1800.0)
    args = parser.parse_args()
    reason = netns_unavailable()
    if reason:
        raise SystemExit(reason)
    with tempfile.TemporaryDirectory(prefix="mf-bench-recover-") as tmp_dir:
        tmp = Path(tmp_dir)
        database_url = asyncio.run(create_database("mailfleet_bench_recover"))
        env = local_provider_env(tmp / "local-provider")
        env["MAILFLEET_PERIODIC_SECONDS"] = "2"
        try:
            with dev_openbao() as bao, control_plane(tmp, bao, database_url, **env) as plane:
                result = run(
                    plane, tmp / "local-provider", tmp / "repo", args.gigabytes, args.limit
                )
                time.sleep(5)  # let the deprovisioning finish before the plane stops
            subprocess.run(
                ["ip", "link", "delete", env["MAILFLEET_LOCAL_PROVIDER_BRIDGE"]],
                check=False,
                capture_output=True,
            )
        finally:
            asyncio.run(drop_database(database_url))
    output = {
        "benchmark": "recover",
        "provider": "local",
        "target_rto_seconds": 900,
        "gigabytes": args.gigabytes,
        **result,
        "cpus": os.cpu_count(),
    }
    write_result(args.out, output)
    print(json.dumps(output, indent=2))


if __name__ == "__main__":
    main()
