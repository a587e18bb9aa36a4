"""The restore drill: prove a snapshot restores, on the machine, without touching live data.

A random sample of the snapshot's files is restored into a scratch directory. Every file
must come back with the size the snapshot recorded; where the live file is unchanged since
the snapshot (same size and modification time), the restored bytes must hash the same as
the live ones. Files changed since are counted, not compared. The scratch is removed.
"""

from __future__ import annotations

import hashlib
import secrets
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

from agent.backup.restic import Restic, snapshot_host
from agent.config import under_root
from agent.errors import CommandError
from agent.mailu.install import Progress

DRILL_DIR = Path("/var/lib/mailfleet-agent/drills")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _unchanged(live: Path, node: dict[str, Any]) -> bool:
    try:
        stat = live.stat()
    except OSError:
        return False
    recorded = datetime.fromisoformat(str(node["mtime"])).timestamp()
    return stat.st_size == node.get("size") and abs(stat.st_mtime - recorded) < 1e-3


async def drill(
    root: Path, restic: Restic, payload: dict[str, Any], progress: Progress
) -> dict[str, Any]:
    sample = payload.get("sample", 50)
    if not isinstance(sample, int) or not 1 <= sample <= 10_000:
        raise CommandError("payload.sample: how many files to restore, 1–10000")
    host = snapshot_host(payload)
    progress(5, "listing the newest snapshot")
    _, nodes, _ = await restic.run("ls", "--json", "--host", host, "latest")
    snapshot = next((n for n in nodes if n.get("struct_type") == "snapshot"), None)
    files = [n for n in nodes if n.get("type") == "file"]
    if snapshot is None or not files:
        raise CommandError("the newest snapshot holds no files to drill with")
    chosen = secrets.SystemRandom().sample(files, min(sample, len(files)))
    scratch = under_root(root, DRILL_DIR) / secrets.token_hex(6)
    scratch.mkdir(mode=0o700, parents=True)
    try:
        progress(20, f"restoring {len(chosen)} files of {snapshot.get('short_id')}")
        includes = [arg for node in chosen for arg in ("--include", str(node["path"]))]
        await restic.run("restore", str(snapshot["id"]), "--target", str(scratch), *includes)
        progress(80, "comparing")
        compared = changed = 0
        wrong: list[str] = []
        for node in chosen:
            restored = scratch / str(node["path"]).lstrip("/")
            if not restored.is_file() or restored.stat().st_size != node.get("size"):
                wrong.append(f"{node['path']} (missing or wrong size)")
                continue
            live = Path(str(node["path"]))
            if not _unchanged(live, node):
                changed += 1
                continue
            compared += 1
            if _sha256(restored) != _sha256(live):
                wrong.append(f"{node['path']} (content differs)")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if wrong:
        raise CommandError(
            f"restore drill of {snapshot.get('short_id')}: {len(wrong)} of {len(chosen)} files "
            f"wrong: {'; '.join(wrong[:5])}"
        )
    return {"snapshot": snapshot.get("short_id"), "restored": len(chosen),
            "compared": compared, "changed_since": changed}  # fmt: skip
