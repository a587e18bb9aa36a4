"""A real agent's memory (RSS and USS) and CPU, idle and during a burst of commands.

Starts OpenBao (dev), a control plane on SQLite and one `mailfleet-agent run` process with
the shipped intervals (heartbeat 10 s, metrics 15 s), lets it enroll, then samples the
agent's RSS, USS (the memory only it holds: what stopping it would give back), PSS (its
share of pages it shares) and CPU time once a second while idle, then every 0.2 s while a
burst of commands (ping and collect-facts in turn, the kinds the API sends) runs. At the
end of the idle period it records where the resident memory is (/proc/PID/smaps, grouped
by mapping) and the process's thread count.
Here libpython, grpc's and OpenSSL's libraries are shared with the control plane's
processes, so USS is lower than on a VPS, where the agent alone maps grpc (≈ 12 MiB of it
resident): there USS ≈ RSS minus libc's pages.
Writes benchmarks/results/agent_footprint.json.

    .venv/bin/python benchmarks/agent_footprint.py [--seconds 300] [--burst 200]
"""

from __future__ import annotations

import argparse
import collections
import json
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped, unused-ignore]

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.harness import add_out_argument, write_result  # noqa: E402
from tests.support.openbao import dev_openbao  # noqa: E402
from tests.support.stack import AgentProcess, ControlPlane, agents, control_plane  # noqa: E402

TARGET_RSS_MB = 40.0
TARGET_CPU_PERCENT = 0.5
BURST_KINDS = ("ping", "collect-facts")  # what the API lets an operator send


class Watch:
    """RSS and USS (MiB) of one process, sampled every ``every`` seconds, with its CPU time."""

    def __init__(self, proc: psutil.Process, every: float) -> None:
        self.proc, self.every = proc, every
        self.rss: list[float] = []
        self.uss: list[float] = []
        self.pss: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            memory = self.proc.memory_full_info()
            self.rss.append(memory.rss / 2**20)
            self.uss.append(memory.uss / 2**20)
            self.pss.append(memory.pss / 2**20)
            self._stop.wait(self.every)

    def __enter__(self) -> Watch:
        times = self.proc.cpu_times()
        self._cpu, self._wall = times.user + times.system, time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        times = self.proc.cpu_times()
        self.cpu_seconds = times.user + times.system - self._cpu
        self.seconds = time.monotonic() - self._wall

    def summary(self) -> dict[str, Any]:
        return {
            "seconds": round(self.seconds, 1),
            "samples": len(self.rss),
            "rss_mb": {
                "max": round(max(self.rss), 1),
                "median": round(statistics.median(self.rss), 1),
            },
            "uss_mb": {
                "max": round(max(self.uss), 1),
                "median": round(statistics.median(self.uss), 1),
            },
            "pss_mb": {
                "max": round(max(self.pss), 1),
                "median": round(statistics.median(self.pss), 1),
            },
            "cpu_percent_of_one_core": round(100 * self.cpu_seconds / self.seconds, 3),
        }


def resident_by_mapping(pid: int, top: int = 8) -> dict[str, float]:
    """Resident MiB per mapped file (anonymous memory as "[anon]", the brk heap as "[heap]"),
    the largest ``top`` of them."""
    resident: collections.Counter[str] = collections.Counter()
    name = "[anon]"
    with open(f"/proc/{pid}/smaps") as smaps:
        for line in smaps:
            fields = line.split()
            if fields[0] == "Rss:":
                resident[name] += int(fields[1])
            elif "-" in fields[0] and not fields[0].endswith(":"):  # a mapping's header
                name = fields[5].rsplit("/", 1)[-1] if len(fields) > 5 else "[anon]"
    return {name: round(kib / 1024, 1) for name, kib in resident.most_common(top)}


def burst(plane: ControlPlane, server_id: str, count: int) -> dict[str, int]:
    """Queue ``count`` commands at once, then wait for each; their final states counted."""
    queued = [plane.command(server_id, BURST_KINDS[i % len(BURST_KINDS)]) for i in range(count)]
    states: dict[str, int] = {}
    for command in queued:
        state = plane.wait_command(server_id, command["id"], timeout=120)["state"]
        states[state] = states.get(state, 0) + 1
    return states


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_out_argument(parser, "agent_footprint")
    parser.add_argument("--seconds", type=float, default=300.0, help="idle sampling")
    parser.add_argument("--burst", type=int, default=200, help="commands in the burst")
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
                with Watch(proc, 1.0) as idle:
                    time.sleep(args.seconds)
                where = resident_by_mapping(proc.pid)
                threads = proc.num_threads()
                with Watch(proc, 0.2) as busy:
                    states = burst(plane, server_id, args.burst)
    result = {
        "benchmark": "agent_footprint",
        "targets": {"rss_mb_max": TARGET_RSS_MB, "cpu_percent_idle": TARGET_CPU_PERCENT},
        "idle": {**idle.summary(), "threads": threads, "resident_mb_by_mapping": where},
        "burst": {**busy.summary(), "commands": args.burst, "states": states},
        "machine": {"cpus": psutil.cpu_count(), "python": platform.python_version()},
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_result(args.out, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
