"""``mailfleet backup run|list|restore|finish``: through the database, as the API would, with
a progress bar following the agent's command (a running ``mailfleet serve`` delivers it)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from control_plane.backups import service
from control_plane.backups.routes import backups_out
from control_plane.backups.schemas import BackupsOut, RestoreIn
from control_plane.commands.models import Command
from control_plane.db.engine import Database
from control_plane.errors import MailFleetError
from control_plane.servers.service import get_server

POLL_SECONDS = 0.3
console = Console(stderr=True, highlight=False)


async def run_backup(db: Database, server_id: uuid.UUID, wait_seconds: float | None) -> str:
    async with db.session() as session:
        command = await service.run_now(session, await get_server(session, server_id))
        command_id = command.id
    if wait_seconds is None:
        return str(command_id)
    result = await follow(db, command_id, wait_seconds, "backup")
    return f"snapshot {result['short_id']}: {result['data_added']} bytes added"


async def restore(
    db: Database, server_id: uuid.UUID, body: RestoreIn, wait_seconds: float | None
) -> str:
    async with db.session() as session:
        command, snapshot = await service.restore(
            session, await get_server(session, server_id), body
        )
        command_id = command.id
    console.print(
        f"restoring snapshot {snapshot.short_id} of {snapshot.taken_at:%Y-%m-%d %H:%M:%S} UTC"
    )
    if wait_seconds is None:
        return str(command_id)
    result = await follow(db, command_id, wait_seconds, "restore")
    if result.get("in_place"):
        return (
            f"restore {result['restore_id']} done; keep it with "
            f"`mailfleet backup finish {server_id} {result['restore_id']} --keep restored` "
            "(or --keep previous to roll back)"
        )
    return f"restored into {result['target']}"


async def finish(
    db: Database, server_id: uuid.UUID, restore_id: str, keep: str, wait_seconds: float
) -> str:
    async with db.session() as session:
        server = await get_server(session, server_id)
        command = await service.finish_restore(session, server, restore_id, keep)
        command_id = command.id
    await follow(db, command_id, wait_seconds, "finish")
    return f"kept the {keep} state"


async def backups(db: Database, server_id: uuid.UUID) -> BackupsOut:
    """The server's snapshots, policy and findings, as the API shows them."""
    async with db.session() as session:
        return await backups_out(session, await get_server(session, server_id))


def snapshot_rows(found: BackupsOut) -> list[tuple[str, ...]]:
    """Table rows; the findings go to stderr first (they are about the table)."""
    for finding in found.findings:
        label = "unknown" if finding.state == "unknown" else finding.severity  # not checked
        console.print(f"[red]{label}[/]: {finding.message}")
    return [
        (
            s.short_id,
            f"{s.taken_at:%Y-%m-%d %H:%M:%S}",
            _age(s.age_seconds),
            f"{s.bytes_processed:,}",
            f"{s.data_added:,}",
            "yes" if s.offsite_copied else "no",
        )
        for s in found.snapshots
    ]


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


async def follow(
    db: Database, command_id: uuid.UUID, wait_seconds: float, what: str
) -> dict[str, Any]:
    """A progress bar over the command's progress; its result, or its failure as an error."""
    started = time.monotonic()
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
               TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn())  # fmt: skip
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(what, total=100)
        while time.monotonic() - started < wait_seconds:
            async with db.session() as session:
                command = await session.get(Command, command_id)
            if command is None:
                raise MailFleetError(f"command {command_id} is gone")
            message = command.progress_message or command.state
            progress.update(task, completed=command.progress_percent, description=message)
            if command.state == "succeeded":
                return dict(json.loads(command.result or "{}"))
            if command.state in service.FINAL:
                raise MailFleetError(f"{what} {command.state}: {command.error or 'no reason'}")
            await asyncio.sleep(POLL_SECONDS)
    raise MailFleetError(f"{what} did not finish within {wait_seconds:.0f} s")
