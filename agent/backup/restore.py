"""Restores: to a directory, or in place with the previous state kept aside.

An in-place restore never destroys the current data: restic restores into a staging tree,
MailU is stopped (when it runs here), each restored path is swapped in by rename and what
was there is kept beside it as ``<path>.mailfleet-previous-<id>``, then MailU starts again.
``backup.restore.finish`` then keeps the restored state (the previous one is deleted) or
rolls back to the previous one. A manifest under the agent's state directory remembers the
swap, so a restart in between loses nothing. The files MailFleet renders (``RENDERED``:
the compose file, ``mailu.env``, …) are never taken from a snapshot: the live ones stay.

Snapshot paths are absolute on the machine that made them; ``snapshot_root`` (the root of
that machine's agent, ``/`` on a VPS) maps them onto this machine, so a snapshot of a lost
VPS restores onto a new one.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import stat
from pathlib import Path
from typing import Any

from agent.backup import sources
from agent.backup.restic import Restic
from agent.config import under_root
from agent.errors import CommandError
from agent.files import write_atomically
from agent.mailu import mta_sts
from agent.mailu.compose import Compose
from agent.mailu.install import COMPOSE_FILE, ENV_FILE, Progress, mailu_dir
from mailfleet.restic import path_problem, readable_path_problem, writable_path_problem

RESTORES_DIR = Path("/var/lib/mailfleet-agent/restores")
_ID_CHARS = set("0123456789abcdef")
_GLOB = set("*?[\\")  # restic --include patterns: an include names one path
# What MailFleet writes into MailU's directory from its own spec or from the control plane
# (relative to it). An in-place restore keeps the live versions: a snapshot from a
# repository the tenant controls could otherwise swap in a compose file (root on the VPS) or
# an nginx include; recovery renders them anew for the new server anyway.
RENDERED = (COMPOSE_FILE, ENV_FILE, mta_sts.FILE, "certs/cert.pem", "certs/key.pem")


def _manifest(root: Path, restore_id: str) -> Path:
    if not restore_id or set(restore_id) - _ID_CHARS or len(restore_id) > 32:
        raise CommandError("payload.restore_id: the id a restore returned")
    return under_root(root, RESTORES_DIR) / f"{restore_id}.json"


def _here(root: Path, snapshot_root: Path, path: str) -> Path:
    """A path of the snapshot's machine, on this one."""
    try:
        relative = Path(path).relative_to(snapshot_root)
    except ValueError:
        raise CommandError(f"snapshot path {path} is outside snapshot_root") from None
    # A crafted snapshot must not swap /etc in.
    return sources.placed(root, str(Path("/") / relative), readable_path_problem,
                          f"snapshot path {path}")  # fmt: skip


async def _mail_stopped(root: Path, units: list[Path]) -> Compose | None:
    """Stop MailU when the swap touches its files and it is installed here."""
    directory = mailu_dir(root)
    touches = any(u == directory or directory in u.parents for u in units)
    if not touches or not (directory / COMPOSE_FILE).exists():
        return None
    compose = Compose(directory)
    await compose.check_engine()
    await compose.down()
    return compose


async def restore_snapshot(
    root: Path, restic: Restic, payload: dict[str, Any], progress: Progress
) -> dict[str, Any]:
    snapshot = str(payload.get("snapshot") or "")
    if not snapshot or (not all(c in _ID_CHARS for c in snapshot) and snapshot != "latest"):
        raise CommandError("payload.snapshot: a snapshot id or 'latest'")
    include = payload.get("include") or []
    if not isinstance(include, list) or not all(
        isinstance(p, str) and path_problem(p) is None and not _GLOB & set(p) for p in include
    ):
        raise CommandError("payload.include: a list of absolute paths in the snapshot")
    target = str(payload.get("target"))
    args = [arg for path in include for arg in ("--include", path)]
    if target != "in_place":
        field = "payload.target ('in_place' or an absolute directory)"
        destination = sources.placed(root, target, writable_path_problem, field)
        if destination.is_dir() and any(destination.iterdir()):
            raise CommandError(f"payload.target: {target} is not empty; name a new directory")
        destination.mkdir(mode=0o700, parents=True, exist_ok=True)
        progress(5, f"restoring {snapshot} to {target}")
        await restic.run("restore", snapshot, "--target", str(destination), *args)
        sources.put_back_sqlite_copies(destination)
        progress(100, "restored")
        return {"snapshot": snapshot, "target": target, "in_place": False}

    (found,) = await restic.snapshots(snapshot)
    snapshot_root = Path(str(payload.get("snapshot_root") or "/"))
    units = [_here(root, snapshot_root, p) for p in (include or found["paths"])]
    restore_id = secrets.token_hex(8)
    staging = under_root(root, RESTORES_DIR) / restore_id
    staging.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        progress(5, f"restoring {found['short_id']} into a staging tree")
        await restic.run("restore", found["id"], "--target", str(staging), *args)
        sources.put_back_sqlite_copies(staging)
        progress(80, "swapping the restored data in; MailU pauses meanwhile")
        swapped = await _swap_in(root, staging, snapshot_root, units, restore_id,
                                 [str(p) for p in (include or found["paths"])])  # fmt: skip
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    progress(100, f"restored {len(swapped)} paths in place; the previous state is kept aside")
    return {
        "snapshot": found["id"],
        "in_place": True,
        "restore_id": restore_id,
        "restored": [str(u) for u, _ in swapped],
        "kept_aside": [str(a) for _, a in swapped if a is not None],
    }


async def _swap_in(
    root: Path,
    staging: Path,
    snapshot_root: Path,
    units: list[Path],
    restore_id: str,
    snapshot_paths: list[str],
) -> list[tuple[Path, Path | None]]:
    swapped: list[tuple[Path, Path | None]] = []
    compose = await _mail_stopped(root, units)
    try:
        for unit, original in zip(units, snapshot_paths, strict=True):
            restored = staging / Path(original).relative_to("/")
            if not restored.exists() and not restored.is_symlink():
                continue
            _keep_rendered(root, unit, restored)
            if not restored.exists() and not restored.is_symlink():
                continue  # the unit was a rendered file, and none lives here
            aside = unit.with_name(f"{unit.name}.mailfleet-previous-{restore_id}")
            if unit.exists() or unit.is_symlink():
                unit.rename(aside)
            else:
                unit.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(restored), str(unit))
            swapped.append((unit, aside if aside.exists() or aside.is_symlink() else None))
        manifest = {"units": [[str(u), str(a) if a else None] for u, a in swapped]}
        write_atomically(_manifest(root, restore_id), json.dumps(manifest), 0o600)
    finally:
        if compose is not None:
            await compose.up()
    return swapped


def _keep_rendered(root: Path, unit: Path, restored: Path) -> None:
    """In the restored tree of ``unit``, the live rendered files replace the snapshot's (or
    none is left where none lives); what lies in their way (a symlink out of the tree, a
    directory) goes."""
    for name in RENDERED:
        live = mailu_dir(root) / name
        if live != unit and unit not in live.parents:
            continue
        staged = restored
        for part in live.relative_to(unit).parts:
            if staged.is_symlink() or not staged.is_dir():
                _remove(staged)
                staged.mkdir(mode=0o755)
            staged = staged / part
        if staged.is_symlink() or staged.exists():
            _remove(staged)
        if not live.is_file() or live.is_symlink():
            continue
        mode = stat.S_IMODE(live.stat().st_mode)
        data = live.read_bytes()
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(staged, flags, mode & 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fchmod(fd, mode)
        finally:
            os.close(fd)


async def finish_restore(root: Path, payload: dict[str, Any]) -> dict[str, Any]:
    """Keep the restored state (drop what was kept aside) or roll back to it."""
    restore_id = str(payload.get("restore_id") or "")
    keep = payload.get("keep")
    if keep not in ("restored", "previous"):
        raise CommandError("payload.keep: 'restored' or 'previous'")
    path = _manifest(root, restore_id)
    if not path.exists():
        raise CommandError(f"no restore {restore_id} is waiting to be finished")
    units = [(Path(u), Path(a) if a else None) for u, a in json.loads(path.read_text())["units"]]
    if keep == "restored":
        for _, aside in units:
            if aside is not None:
                _remove(aside)
    else:
        compose = await _mail_stopped(root, [u for u, _ in units])
        try:
            for unit, aside in units:
                _remove(unit)
                if aside is not None:
                    aside.rename(unit)
        finally:
            if compose is not None:
                await compose.up()
    path.unlink()
    return {"restore_id": restore_id, "kept": keep, "paths": [str(u) for u, _ in units]}


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
