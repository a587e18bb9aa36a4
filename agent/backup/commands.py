"""Agent commands ``backup.*``: restic runs with progress, against the repositories the
control plane names (passwords and backend credentials delivered from Vault).

``backup.run``       snapshot the data (MailU's data root by default) to the primary, then
                     ``restic copy`` it to the offsite repository when there is one; the
                     first run of each UTC day also carries each repository's stored size
                     (``restic stats``), which the control plane meters as the day's
                     backup storage
``backup.snapshots`` list the primary's snapshots
``backup.restore``   a snapshot to a directory, or in place with the previous state kept
                     aside until ``backup.restore.finish`` keeps or rolls back
``backup.check``     ``restic check`` with a rotating ``--read-data-subset``
``backup.drill``     restore a sample of the newest snapshot to scratch and compare it
``backup.forget``    ``restic forget`` by the retention policy, then ``prune`` (and the
                     repositories' sizes again, as after a run)
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.backup import sources
from agent.backup.drill import drill as restore_drill
from agent.backup.restic import PARTIAL, Repository, Restic, ResticError, snapshot_host
from agent.backup.restore import finish_restore, restore_snapshot
from agent.config import under_root
from agent.errors import CommandError
from agent.mailu.install import Progress

log = logging.getLogger(__name__)
CACHE_DIR = Path("/var/cache/mailfleet-agent/restic")
TAG = "mailfleet"
_SUBSET = re.compile(r"^[1-9][0-9]*/[1-9][0-9]*$")
KEEP_FLAGS = ("last", "hourly", "daily", "weekly", "monthly", "yearly")


def repositories(root: Path, payload: dict[str, Any]) -> tuple[Restic, Restic | None]:
    """The primary (and offsite) repository from the payload and its delivered secrets."""
    cache = under_root(root, CACHE_DIR)
    cache.mkdir(mode=0o700, parents=True, exist_ok=True)
    primary = payload.get("repository") or {}
    main = Repository.from_payload(
        primary.get("url"),
        payload.get("repository_password"),
        payload.get("repository_env"),
        "repository",
    )
    offsite = payload.get("offsite")
    copy = None
    if offsite:
        copy = Repository.from_payload(
            offsite.get("url"), payload.get("offsite_password"), payload.get("offsite_env"),
            "offsite",
        )  # fmt: skip
    return Restic(main, cache), (Restic(copy, cache) if copy else None)


class Throttled:
    """Progress at most every ``interval`` seconds, mapped into ``[low, high]`` percent."""

    def __init__(self, progress: Progress, low: int, high: int, interval: float = 1.0) -> None:
        self.progress, self.low, self.high, self.interval = progress, low, high, interval
        self._last = 0.0

    def __call__(self, message: dict[str, Any]) -> None:
        if message.get("message_type") != "status":
            return
        now = time.monotonic()
        if now - self._last < self.interval:
            return
        self._last = now
        fraction = float(message.get("percent_done") or 0.0)
        done, total = int(message.get("bytes_done") or 0), int(message.get("total_bytes") or 0)
        files = f"{message.get('files_done', 0)}/{message.get('total_files', 0)} files"
        eta = message.get("seconds_remaining")
        text = f"{done}/{total} bytes, {files}" + (f", ETA {int(eta)} s" if eta else "")
        self.progress(self.low + int((self.high - self.low) * fraction), text)


async def run(root: Path, payload: dict[str, Any], progress: Progress) -> dict[str, Any]:
    primary, offsite = repositories(root, payload)
    paths = sources.chosen_paths(root, payload)
    databases = sources.chosen_sqlite(root, payload)
    host = snapshot_host(payload)
    limit = payload.get("limit_upload_kib")
    if limit is not None and (not isinstance(limit, int) or limit <= 0):
        raise CommandError("payload.limit_upload_kib: KiB/s, a positive whole number")
    throttle = ["--limit-upload", str(limit)] if limit else []
    measure = measure_due(primary, payload)
    started = time.monotonic()
    when = datetime.now(UTC).isoformat()
    with sources.consistent_sqlite_copies(databases) as excludes:
        progress(5, f"backing up {len(paths)} paths")
        code, messages, _, created = await primary.run_prepared(
            "backup", "--json", "--host", host, "--tag", TAG, *throttle, *excludes,
            *[str(p) for p in paths],
            on_json=Throttled(progress, 5, 90), ok=(0, PARTIAL), create=True,
        )  # fmt: skip
    summary = next((m for m in reversed(messages) if m.get("message_type") == "summary"), None)
    if summary is None:
        raise CommandError("restic backup: finished without a summary")
    warnings = [m for m in messages if m.get("message_type") == "error"]
    result: dict[str, Any] = {
        "short_id": str(summary["snapshot_id"])[:8],
        "time": when,
        "repository_created": created,
        "paths": [str(p) for p in paths],
        "files_new": summary.get("files_new", 0),
        "files_changed": summary.get("files_changed", 0),
        "files_unmodified": summary.get("files_unmodified", 0),
        "data_added": summary.get("data_added", 0),
        "total_files_processed": summary.get("total_files_processed", 0),
        "total_bytes_processed": summary.get("total_bytes_processed", 0),
        "duration_seconds": round(time.monotonic() - started, 3),
        "unreadable_files": len(warnings) if code == PARTIAL else 0,
        "root": str(root),
    }
    if offsite is not None:
        progress(90, "copying the snapshot offsite")
        await offsite.run_prepared(
            "copy", result["short_id"], source=primary.repository,
            create=True, chunker_from=primary.repository,
        )  # fmt: skip
        result["offsite_copied"] = True
    if measure:
        progress(95, "measuring the repository")
        result |= await stored_sizes(primary, offsite)
    progress(100, f"snapshot {result['short_id']}: {result['data_added']} bytes added")
    return result


def _measured_marker(repository: Restic) -> Path:
    digest = hashlib.sha256(repository.repository.url.encode()).hexdigest()[:24]
    return repository.cache_dir / "measured" / digest


def measure_due(primary: Restic, payload: dict[str, Any]) -> bool:
    """Whether this backup measures the repositories: ``payload.measure_size`` when the
    control plane says, else when the primary was not measured yet this UTC day. Why: the
    bill takes one reading per day (a later one only replaces it), and ``restic stats``
    reads every snapshot's trees — on an hourly schedule it cost more than the incremental
    backup itself; the snapshot's own summary cannot stand in (``data_added`` is before
    compression and knows nothing of pruning)."""
    asked = payload.get("measure_size")
    if asked is not None:
        if not isinstance(asked, bool):
            raise CommandError("payload.measure_size: true or false")
        return asked
    marker = _measured_marker(primary)
    try:
        return marker.read_text().strip() != datetime.now(UTC).date().isoformat()
    except OSError:
        return True


async def stored_sizes(primary: Restic, offsite: Restic | None) -> dict[str, int]:
    """``repository_size`` and ``offsite_size``: each repository's size that could be
    measured (the storage bill's figures); a measured primary is marked for the day."""
    sizes: dict[str, int] = {}
    for key, repository in (("repository_size", primary), ("offsite_size", offsite)):
        size = await stored_size(repository) if repository is not None else None
        if size is not None:
            sizes[key] = size
    if len(sizes) == (2 if offsite is not None else 1):  # else the next run tries again
        marker = _measured_marker(primary)
        marker.parent.mkdir(mode=0o700, exist_ok=True)
        marker.write_text(datetime.now(UTC).date().isoformat())
    return sizes


async def stored_size(repository: Restic) -> int | None:
    """The bytes the repository holds (``restic stats --mode raw-data``: its packs, after
    deduplication and compression — what the storage bills), or None when restic could not
    tell: the snapshot is safe either way, so a failed measurement never fails the backup
    (the size is then simply missing from the result, as from an older agent's)."""
    try:
        _, messages, _ = await repository.run(
            "stats", "--json", "--mode", "raw-data", limit_seconds=600
        )
    except ResticError as exc:
        log.warning("restic stats failed: %s", exc)
        return None
    size = next((m.get("total_size") for m in messages if "total_size" in m), None)
    return size if isinstance(size, int) and size >= 0 else None


async def snapshots(root: Path, payload: dict[str, Any], progress: Progress) -> dict[str, Any]:
    primary, _ = repositories(root, payload)
    found = await primary.snapshots()
    return {
        "snapshots": [
            {k: s.get(k) for k in ("id", "short_id", "time", "hostname", "paths", "tags")}
            for s in found
        ]
    }


async def restore(root: Path, payload: dict[str, Any], progress: Progress) -> dict[str, Any]:
    primary, _ = repositories(root, payload)
    return await restore_snapshot(root, primary, payload, progress)


async def restore_finish(root: Path, payload: dict[str, Any], progress: Progress) -> dict[str, Any]:
    return await finish_restore(root, payload)


async def drill(root: Path, payload: dict[str, Any], progress: Progress) -> dict[str, Any]:
    primary, _ = repositories(root, payload)
    return await restore_drill(root, primary, payload, progress)


async def check(root: Path, payload: dict[str, Any], progress: Progress) -> dict[str, Any]:
    primary, _ = repositories(root, payload)
    subset = str(payload.get("read_data_subset") or "")
    if subset and not _SUBSET.match(subset):
        raise CommandError("payload.read_data_subset: n/t, e.g. 3/12")
    progress(5, "checking the repository" + (f" (data subset {subset})" if subset else ""))
    args = ["--read-data-subset", subset] if subset else []
    _, _, text, _ = await primary.run_prepared("check", *args)
    return {"ok": True, "read_data_subset": subset or None, "output": text[-500:]}


async def forget(root: Path, payload: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Forget what the retention policy lets go (MailFleet's snapshots of this host only),
    then prune the data no snapshot needs any more."""
    primary, offsite = repositories(root, payload)
    keep = payload.get("keep")
    if not isinstance(keep, dict) or not keep:
        raise CommandError('payload.keep: the retention policy, e.g. {"daily": 30}')
    args: list[str] = []
    for name, value in keep.items():
        if name not in KEEP_FLAGS or not isinstance(value, int) or value < 0:
            raise CommandError(f"payload.keep.{name}: one of {KEEP_FLAGS} with a count ≥ 0")
        if value:
            args += [f"--keep-{name}", str(value)]
    host = snapshot_host(payload)
    progress(5, "forgetting snapshots outside the retention policy")
    _, groups, _, _ = await primary.run_prepared(
        "forget", "--json", "--host", host, "--tag", TAG, "--group-by", "host", *args
    )
    kept = [s["id"] for g in groups for s in g.get("keep") or []]
    removed = [s["id"] for g in groups for s in g.get("remove") or []]
    pruned = False
    if removed and payload.get("prune", True):
        progress(50, f"pruning data of {len(removed)} forgotten snapshots")
        await primary.run_prepared("prune")
        pruned = True
    result: dict[str, Any] = {"kept": kept, "removed": removed, "pruned": pruned}
    if pruned:  # the repository shrank: its new size, with the offsite's beside it
        progress(95, "measuring the repository")
        result |= await stored_sizes(primary, offsite)
    return result
