"""A real agent's resident memory and CPU over a stretch of normal work.

Starts OpenBao (dev), a control plane on SQLite and one `mailfleet-agent run` process with
the shipped intervals (heartbeat 10 s, metrics 15 s), lets it enroll, then samples the
agent's RSS and CPU time once a second. Writes benchmarks/results/agent_footprint.json.

    .venv/bin/python benchmarks/agent_footprint.py [--seconds 300]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.harness import add_out_argument, write_result  # noqa: E402
from tests.support.openbao import dev_openbao  # noqa: E402
from tests.support.stack import AgentProcess, agents, control_plane  # noqa: E402

TARGET_RSS_MB = 40.0
TARGET_CPU_PERCENT = 0.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_out_argument(parser, "agent_footprint")
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument(
        "--settle", type=float, default=5.0, help="seconds after enrollment before sampling"
    )
    args = parser.parse_args()
    shipped = {
        "MAILFLEET_HEARTBEAT_INTERVAL_SECONDS": "10",
        "MAILFLEET_METRICS_INTERVAL_SECONDS": "15",
        "MAILFLEET_AGENT_UNKNOWN_AFTER_SECONDS": "40",
    }
    with tempfile.TemporaryDirectory() as tmp_dir, dev_openbao() as bao:
        tmp = Path(tmp_dir)
        with control_plane(tmp, bao, f"sqlite+aiosqlite:///{tmp}/cp.db", **shipped) as plane:
            server_id, toml = plane.new_server("footprint")
            agent = AgentProcess(tmp / "agent", toml)
            with agents(agent):
                plane.wait_status(server_id, "online", timeout=60)
                assert agent.process is not None
                proc = psutil.Process(agent.process.process.pid)
                time.sleep(args.settle)  # past enrollment and the first batch
                cpu_start, wall_start = proc.cpu_times(), time.monotonic()
                rss: list[float] = []
                deadline = wall_start + args.seconds
                while time.monotonic() < deadline:
                    rss.append(proc.memory_info().rss / 2**20)
                    time.sleep(1)
                cpu_end, wall = proc.cpu_times(), time.monotonic() - wall_start
                ping = plane.command(server_id, "ping")
                assert plane.wait_command(server_id, ping["id"])["state"] == "succeeded"
    cpu_seconds = (cpu_end.user + cpu_end.system) - (cpu_start.user + cpu_start.system)
    result = {
        "benchmark": "agent_footprint",
        "seconds": round(wall, 1),
        "rss_mb": {
            "max": round(max(rss), 1),
            "median": round(statistics.median(rss), 1),
            "target_max": TARGET_RSS_MB,
        },
        "cpu_percent_of_one_core": {
            "mean": round(100 * cpu_seconds / wall, 3),
            "target": TARGET_CPU_PERCENT,
        },
        "machine": {"cpus": psutil.cpu_count(), "python": platform.python_version()},
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_result(args.out, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
