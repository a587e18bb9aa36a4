"""A workflow step's agent command: queued once per attempt, then followed until it settles.

The idempotency key is derived from the workflow row (``prefix`` and id), the phase
(do/undo), the command's label and the step's attempt, so a step re-run after a crash (or by
another replica) finds the command it queued before rather than sending a second one. The
row has ``id``, ``server_id``, ``state``, ``step_command_id`` and ``step_attempts``.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.commands import handlers
from control_plane.commands import service as commands
from control_plane.commands.models import Command
from control_plane.db.base import utcnow
from control_plane.db.engine import Database
from control_plane.errors import NotFound
from control_plane.provisioning.workflow import Fail, Retry, Wait
from control_plane.servers.models import Server

Pending = Wait | Retry | Fail
RUN_SECONDS = 60.0


class StepRow(Protocol):
    id: uuid.UUID
    server_id: uuid.UUID
    state: str
    step_command_id: uuid.UUID | None
    step_attempts: int


async def result(
    db: Database,
    row: StepRow,
    prefix: str,
    kind: str,
    payload: dict[str, Any],
    label: str,
    expire: float,
) -> dict[str, Any] | Pending:
    """The command's result once it succeeded; otherwise the outcome that waits for it."""
    command = await follow(db, row, prefix, kind, payload, label, RUN_SECONDS, expire)
    if not isinstance(command, Command):
        return command
    try:
        found = json.loads(command.result or "")
    except ValueError:
        found = None
    if not isinstance(found, dict):
        return Fail(f"{kind}: the agent's result is not readable")
    return found


async def follow(
    db: Database,
    switch: StepRow,
    prefix: str,
    kind: str,
    payload: dict[str, Any],
    label: str,
    run: float,
    expire: float,
) -> Command | Pending:
    """Queue ``kind`` once per attempt of the step, then follow it: the succeeded command,
    or Wait / Retry (the agent restarted mid-run: again) / Fail. One not delivered within
    ``expire`` seconds times out and is never delivered: an agent back after the workflow
    rolled back must not run a stale change."""
    if switch.step_command_id is None:
        phase = "undo" if switch.state == "rolling_back" else "do"
        key = f"{prefix}:{switch.id}:{phase}:{label}:{switch.step_attempts}"

        async def queue(session: AsyncSession) -> uuid.UUID:
            server = await session.get(Server, switch.server_id)
            if server is None:
                raise NotFound("server", switch.server_id)
            command = await commands.queue_system_command(
                session, server, kind, payload, run, idempotency_key=key
            )
            if command.expires_at is None and command.state == "queued":
                command.expires_at = utcnow() + timedelta(seconds=expire)
            return command.id

        command_id = await db.transact(queue)
        handlers.wake(switch.server_id)
        return Wait(f"waiting for the agent: {kind}", changes={"step_command_id": command_id})
    async with db.session() as session:
        command = await session.get(Command, switch.step_command_id)
    if command is None:
        return Retry(f"the {kind} command is gone; queueing it again")
    if command.state == "succeeded":
        return command
    if command.state == "failed" and (command.error or "").startswith("interrupted"):
        return Retry(f"the agent restarted during {kind}; sending it again")
    if command.state in ("failed", "timed_out", "cancelled"):
        return Fail(f"{kind} {command.state}: {command.error or 'no reason given'}")
    return Wait(f"{kind}: {command.progress_message or command.state}")


async def settle(session: AsyncSession, command_id: uuid.UUID | None) -> bool:
    """A failed step lets go of its command: one still queued is cancelled (an agent back
    later must not run it). Whether it reached the agent (one that did not changed nothing)."""
    if command_id is None:
        return False
    command = await session.get(Command, command_id)
    if command is None:
        return False
    if command.state == "queued":
        await commands.request_cancel(session, command)
        return False
    return command.sent_at is not None
