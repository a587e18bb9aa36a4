"""A newcomer's first ten minutes, timed: a fresh clone's `make run` (venv, install, serve)
until the README's second shell has a ready local server, then a second start of `make run`
and the same again.

The walk is the one ``tests/e2e/test_readme.py`` asserts (``tests/support/quickstart.py``):
the README's own second-shell lines, with free ports and a bridge of its own. Targets: a
ready local server within 90 s of `make run` on a fresh clone, within 10 s on a second
start. Needs root (the local provider's namespaces) and the package registry for the
install. ``--reuse-venv`` skips the clone and install (this checkout's venv; the suite's
smoke run).

    sudo .venv/bin/python benchmarks/first_run.py

Writes benchmarks/results/first_run.json.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.harness import add_out_argument, write_result  # noqa: E402
from tests.support.netns import netns_unavailable  # noqa: E402
from tests.support.quickstart import Walk, admin_key_line, prepare_checkout  # noqa: E402

TARGET_FIRST_SECONDS = 90
TARGET_SECOND_SECONDS = 10


def one_start(walk: Walk, key: str | None, limit: float, n: int) -> tuple[str, dict[str, float]]:
    """`make run`, then the second shell; the times from the start of `make run`."""
    started_epoch = time.time()
    with walk.make_run() as run:
        shown, key_seconds = admin_key_line(run, timeout=limit)
        key = shown or key
        if key is None:
            raise SystemExit("make run showed no admin key and none is known")
        shell_started = time.monotonic()
        again = {"tenant create acme": f"tenant create acme-{n}"} if n else None
        shell = walk.second_shell(key, timeout=limit, timed=True, replace=again)
        if shell.returncode != 0:
            raise SystemExit(f"the second shell failed:\n{shell.stderr[-4000:]}")
        figures = {
            "api_and_key_seconds": round(key_seconds, 2),
            "second_shell_seconds": round(time.monotonic() - shell_started, 2),
            "to_ready_server_seconds": round(_ready_at(shell.stderr) - started_epoch, 2),
        }
    return key, figures


def _ready_at(trace: str) -> float:
    """When `server create --wait` returned, as a Unix time: bash -x marks each command
    with the time it started (PS4), and the assignment of its output comes right after."""
    marks = [line for line in trace.splitlines() if line.startswith("+") and "@" in line]
    for previous, line in itertools.pairwise(marks):
        if "server create" in previous:
            return float(line.split("@", 1)[1].split()[0])
    raise SystemExit("no `server create` in the second shell's trace")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_out_argument(parser, "first_run")
    parser.add_argument("--reuse-venv", action="store_true", help="no clone, no install")
    parser.add_argument("--limit", type=float, default=600.0, help="seconds per step at most")
    args = parser.parse_args()
    reason = netns_unavailable()
    if reason:
        raise SystemExit(reason)
    with tempfile.TemporaryDirectory(prefix="mf-bench-first-run-") as tmp_dir:
        tmp = Path(tmp_dir)
        checkout, config = tmp / "mailfleet", tmp / "config"
        config.mkdir()
        cloned = time.monotonic()
        prepare_checkout(checkout, reuse_venv=args.reuse_venv)
        clone_seconds = time.monotonic() - cloned
        walk = Walk(checkout, config)
        try:
            key, first = one_start(walk, None, args.limit, 0)
            _, second = one_start(walk, key, args.limit, 1)
        finally:
            walk.sweep()
    result: dict[str, Any] = {
        "benchmark": "first_run",
        "fresh_clone": not args.reuse_venv,
        "clone_seconds": round(clone_seconds, 2),
        "first_start": first,
        "second_start": second,
        "target_first_seconds": TARGET_FIRST_SECONDS,
        "target_second_seconds": TARGET_SECOND_SECONDS,
        "cpus": os.cpu_count(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_result(args.out, result)
    print(result)


if __name__ == "__main__":
    main()
