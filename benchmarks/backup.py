"""``backup.run`` against raw ``restic backup`` on the same generated maildir.

Generates a maildir of ``--gigabytes`` (messages of 4–96 KiB cut from a random pool, so each
is unique and incompressible), then for each of MailFleet's agent command and plain restic,
into fresh repositories: an initial backup, 1 % of the messages changed, an incremental
backup. Reports wall times, the ratio MailFleet/raw (target ≤ 1.05) and the restore rate of
a full restore with ``backup.restore`` into a directory.

Writes benchmarks/results/backup.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.backup import commands  # noqa: E402
from benchmarks.harness import add_out_argument, write_result  # noqa: E402

PASSWORD = secrets.token_urlsafe(24)


def generate(mail: Path, total: int, seed: int = 1) -> list[Path]:
    rng = random.Random(seed)
    pool = os.urandom(64 * 1024 * 1024)
    written, made = 0, []
    box = 0
    while written < total:
        cur = mail / f"user{box}@bench.example" / "cur"
        cur.mkdir(parents=True, exist_ok=True)
        for n in range(1000):
            size = rng.randint(4096, 98304)
            start = rng.randrange(0, len(pool) - size)
            path = cur / f"{1700000000 + n}.M{n}P{box}.bench,S={size}:2,S"
            path.write_bytes(pool[start : start + size])
            made.append(path)
            written += size
            if written >= total:
                break
        box += 1
    return made


def change_one_percent(messages: list[Path], seed: int) -> None:
    rng = random.Random(seed)
    for path in rng.sample(messages, max(1, len(messages) // 100)):
        with path.open("ab") as handle:
            handle.write(os.urandom(512))


def raw_backup(repo: Path, data: Path) -> float:
    env = {"PATH": os.environ["PATH"], "RESTIC_PASSWORD": PASSWORD}
    os.sync()  # the previous run's writeback is not this run's cost
    started = time.perf_counter()
    subprocess.run(
        ["restic", "backup", "--repo", str(repo), "--cache-dir", str(repo) + ".cache",
         "--host", "bench", "--tag", "mailfleet", "--json", str(data)],
        env=env, check=True, capture_output=True,
    )  # fmt: skip
    return time.perf_counter() - started


def init(repo: Path) -> None:
    env = {"PATH": os.environ["PATH"], "RESTIC_PASSWORD": PASSWORD}
    subprocess.run(["restic", "init", "--repo", str(repo)], env=env, check=True,
                   capture_output=True)  # fmt: skip


async def mailfleet_backup(root: Path, repo: Path) -> float:
    payload = {"repository": {"url": str(repo)}, "repository_password": PASSWORD,
               "host": "bench", "paths": ["/mailu/mail"]}  # fmt: skip
    os.sync()
    started = time.perf_counter()
    await commands.run(root, payload, lambda percent, message: None)
    return time.perf_counter() - started


async def mailfleet_restore(root: Path, repo: Path) -> float:
    payload = {"repository": {"url": str(repo)}, "repository_password": PASSWORD,
               "snapshot": "latest", "target": "/restored"}  # fmt: skip
    started = time.perf_counter()
    await commands.restore(root, payload, lambda percent, message: None)
    return time.perf_counter() - started


async def measure(work: Path, root: Path, messages: list[Path], rounds: int) -> dict[str, Any]:
    """Each figure is the best of ``rounds``, fresh repositories every round and the order of
    the two sides alternated, so neither always reads a warm page cache first."""
    data = root / "mailu" / "mail"
    best: dict[str, float] = {}

    def keep(name: str, seconds: float) -> None:
        best[name] = min(best.get(name, seconds), seconds)

    for round_ in range(rounds):
        raw, ours = work / f"raw{round_}", work / f"mailfleet{round_}"
        init(raw)
        init(ours)
        if round_ % 2 == 0:
            keep("raw_initial_s", raw_backup(raw, data))
            keep("mailfleet_initial_s", await mailfleet_backup(root, ours))
        else:
            keep("mailfleet_initial_s", await mailfleet_backup(root, ours))
            keep("raw_initial_s", raw_backup(raw, data))
        change_one_percent(messages, seed=round_ + 2)
        if round_ % 2 == 0:
            keep("mailfleet_incremental_s", await mailfleet_backup(root, ours))
            keep("raw_incremental_s", raw_backup(raw, data))
        else:
            keep("raw_incremental_s", raw_backup(raw, data))
            keep("mailfleet_incremental_s", await mailfleet_backup(root, ours))
        if round_ == rounds - 1:
            keep("restore_s", await mailfleet_restore(root, ours))
        shutil.rmtree(raw)
        shutil.rmtree(ours)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_out_argument(parser, "backup")
    parser.add_argument("--gigabytes", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mailfleet-bench-backup-"))
    try:
        root = work / "vps"
        started = time.perf_counter()
        messages = generate(root / "mailu" / "mail", int(args.gigabytes * 1024**3))
        size = sum(p.stat().st_size for p in messages)
        print(f"generated {len(messages)} messages, {size / 1024**3:.2f} GiB "
              f"in {time.perf_counter() - started:.1f} s", flush=True)  # fmt: skip
        figures = asyncio.run(measure(work, root, messages, args.rounds))
        version = subprocess.run(["restic", "version"], capture_output=True, text=True)
        result: dict[str, Any] = {
            "benchmark": "backup",
            "messages": len(messages),
            "bytes": size,
            "rounds": args.rounds,
            **{k: round(v, 3) for k, v in figures.items()},
            "ratio_initial": round(figures["mailfleet_initial_s"] / figures["raw_initial_s"], 3),
            "ratio_incremental": round(
                figures["mailfleet_incremental_s"] / figures["raw_incremental_s"], 3
            ),
            "restore_mib_per_s": round(size / 1024**2 / figures["restore_s"], 1),
            "target_ratio": 1.05,
            "restic": version.stdout.split()[1],
            "cpus": os.cpu_count(),
        }
        write_result(args.out, result)
        print(json.dumps(result, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
