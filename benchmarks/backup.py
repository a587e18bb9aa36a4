"""``backup.run`` and ``backup.restore`` against raw ``restic backup``/``restore`` on the same
generated maildir.

Generates a maildir of ``--gigabytes`` (messages of 4–96 KiB cut from a random pool, so each
is unique and incompressible), then ``--rounds`` rounds (10 by default), each into a fresh
repository and restic cache per side: an initial backup, 1 % of the messages changed, an
incremental backup, a full restore into a new directory. Within each phase MailFleet's agent
command and plain restic run back to back, the one to lead alternating by round (ABAB…), and
every timed run starts from the same cache state (``--cache cold``: the page cache dropped;
``warm``: what it reads read once first). Reports per phase each side's median and spread,
and the ratio MailFleet/raw of each round's pair: median, spread and a 95 % interval for the
median, with the verdict against the target (≤ 1.05) — "unresolved" when the interval
straddles it. MailFleet's backup includes what the command does after restic: the day's
first backup (each round's initial one, its repository new) measures the repository with
``restic stats`` for the storage bill; later ones the same day (the incremental) do not.

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
from agent.config import under_root  # noqa: E402
from benchmarks.harness import (  # noqa: E402
    add_out_argument,
    compare,
    drop_page_cache,
    in_turn,
    spread,
    write_result,
)

PASSWORD = secrets.token_urlsafe(24)
TARGET = 1.05  # MailFleet/raw: the wrapper may cost at most 5 %


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


async def mailfleet_backup(root: Path, repo: Path) -> tuple[float, float, bool]:
    """The command's wall time, and the part of it its ``restic backup`` took (the rest is
    the start-up and, on the day's first backup, ``restic stats`` measuring the
    repository)."""
    payload = {"repository": {"url": str(repo)}, "repository_password": PASSWORD,
               "host": "bench", "paths": ["/mailu/mail"]}  # fmt: skip
    os.sync()
    started = time.perf_counter()
    result = await commands.run(root, payload, lambda percent, message: None)
    seconds = time.perf_counter() - started
    return seconds, float(result["duration_seconds"]), "repository_size" in result


def raw_restore(repo: Path, target: Path) -> float:
    env = {"PATH": os.environ["PATH"], "RESTIC_PASSWORD": PASSWORD}
    started = time.perf_counter()
    subprocess.run(
        ["restic", "restore", "latest", "--repo", str(repo), "--cache-dir", str(repo) + ".cache",
         "--target", str(target)],
        env=env, check=True, capture_output=True,
    )  # fmt: skip
    return time.perf_counter() - started


async def mailfleet_restore(root: Path, repo: Path, target: str) -> float:
    payload = {"repository": {"url": str(repo)}, "repository_password": PASSWORD,
               "snapshot": "latest", "target": target}  # fmt: skip
    started = time.perf_counter()
    await commands.restore(root, payload, lambda percent, message: None)
    return time.perf_counter() - started


SIDES = ("mailfleet", "raw")


class Bench:
    """One maildir, and per round a fresh repository and restic cache for each side."""

    def __init__(self, work: Path, root: Path, messages: list[Path], cold: bool) -> None:
        self.work, self.root, self.messages, self.cold = work, root, messages, cold
        self.data = root / "mailu" / "mail"
        self.times: dict[str, dict[str, list[float]]] = {
            phase: {side: [] for side in SIDES} for phase in ("initial", "incremental", "restore")
        }
        self.restic_parts: dict[str, list[float]] = {}  # MailFleet's backups: restic's share
        self.measured: dict[str, int] = {}  # MailFleet's backups that ran restic stats

    def settle(self, tree: Path) -> None:
        """The same cache state before every timed run: the page cache dropped (cold) or
        else ``tree`` — what the run reads — read once, discarded (warm)."""
        if self.cold:
            drop_page_cache()
            return
        os.sync()
        for path in tree.rglob("*"):
            if path.is_file():
                with path.open("rb") as handle:
                    while handle.read(1 << 20):
                        pass

    async def backup(self, phase: str, side: str, round_dir: Path) -> float:
        self.settle(self.data)
        repo = round_dir / side
        if side == "raw":
            return raw_backup(repo, self.data)
        seconds, restic_part, measured = await mailfleet_backup(self.root, repo)
        self.restic_parts.setdefault(phase, []).append(restic_part)
        self.measured[phase] = self.measured.get(phase, 0) + measured
        return seconds

    async def restore(self, side: str, round_dir: Path) -> tuple[float, Path]:
        repo = round_dir / side
        self.settle(repo)
        if side == "raw":
            target = round_dir / "raw-restored"
            return raw_restore(repo, target), target
        target = self.root / f"restored-{round_dir.name}"
        return await mailfleet_restore(self.root, repo, "/" + target.name), target

    async def round(self, round_: int) -> None:
        """Initial backup, 1 % changed, incremental backup, full restore: within each phase
        both sides back to back, the one to lead alternating by round (ABAB…)."""
        round_dir = self.work / f"round{round_}"
        round_dir.mkdir()
        for side in SIDES:
            init(round_dir / side)
        for side in in_turn(round_, *SIDES):
            self.times["initial"][side].append(await self.backup("initial", side, round_dir))
        change_one_percent(self.messages, seed=round_ + 2)
        for side in in_turn(round_, *SIDES):
            self.times["incremental"][side].append(
                await self.backup("incremental", side, round_dir)
            )
        restored = {}
        for side in in_turn(round_, *SIDES):
            seconds, restored[side] = await self.restore(side, round_dir)
            self.times["restore"][side].append(seconds)
        if round_ == 0:  # each side restored every message
            for side, target in restored.items():
                count = sum(1 for p in target.rglob("*") if p.is_file())
                assert count == len(self.messages), f"{side} restored {count} files"
        shutil.rmtree(round_dir)
        shutil.rmtree(restored["mailfleet"])
        shutil.rmtree(under_root(self.root, commands.CACHE_DIR))
        print(f"round {round_ + 1}: " + ", ".join(
            f"{phase} {t['mailfleet'][-1]:.2f}/{t['raw'][-1]:.2f} s"
            for phase, t in self.times.items()
        ), flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_out_argument(parser, "backup")
    parser.add_argument("--gigabytes", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds (default 10)")
    parser.add_argument(
        "--cache",
        choices=("cold", "warm"),
        default="cold",
        help="before each timed run: drop the page cache (cold, needs root; falls back to warm)"
        " or read what the run reads once (warm)",
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mailfleet-bench-backup-"))
    try:
        root = work / "vps"
        started = time.perf_counter()
        messages = generate(root / "mailu" / "mail", int(args.gigabytes * 1024**3))
        size = sum(p.stat().st_size for p in messages)
        print(f"generated {len(messages)} messages, {size / 1024**3:.2f} GiB "
              f"in {time.perf_counter() - started:.1f} s", flush=True)  # fmt: skip
        cold = args.cache == "cold" and drop_page_cache()
        load_before = os.getloadavg()[0]
        bench = Bench(work, root, messages, cold)
        for round_ in range(args.rounds):
            asyncio.run(bench.round(round_))
        version = subprocess.run(["restic", "version"], capture_output=True, text=True)
        phases = {
            phase: compare(("mailfleet_s", "raw_s"), t["mailfleet"], t["raw"], target=TARGET)
            for phase, t in bench.times.items()
        }
        for phase, parts in bench.restic_parts.items():
            phases[phase]["mailfleet_s"]["restic_backup_part"] = spread(parts)
            phases[phase]["mailfleet_s"]["rounds_measuring_size"] = bench.measured[phase]
        result: dict[str, Any] = {
            "benchmark": "backup",
            "messages": len(messages),
            "bytes": size,
            "rounds": args.rounds,
            "cache_state": (
                "cold: page cache dropped before each timed run"
                if cold
                else "warm: what each run reads was read once, discarded, before it"
            ),
            **phases,
            "restore_mib_per_s": round(
                size / 1024**2 / phases["restore"]["mailfleet_s"]["median"], 1
            ),
            "target_ratio": TARGET,
            "restic": version.stdout.split()[1],
            "cpus": os.cpu_count(),
            "load_average_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        write_result(args.out, result)
        print(json.dumps(result, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
