"""Telling the workflow that something it waits for has happened, so it looks now.

Registered with the agent link (``commands.handlers``): an agent's stream coming up makes a
server waiting on its agent due, and a settled ``mailu.install`` makes the server that
follows it due. Runners in this process are woken once that transaction commits.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import ColumnElement, event, update
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.commands import handlers
from control_plane.commands.models import Command
from control_plane.db.base import utcnow
from control_plane.servers.models import Server

WAITING_ON_AGENT = ("enrolling",)
FOLLOWED_COMMANDS = {"mailu.install": "installing_mail"}  # kind → the step that follows it

_runners: list[Callable[[], None]] = []


def on_nudge(wake: Callable[[], None]) -> Callable[[], None]:
    """Call ``wake`` after a nudge commits; returns the function that stops it."""
    _runners.append(wake)
    return lambda: _runners.remove(wake) if wake in _runners else None


def _wake_runners(_session: Any) -> None:
    for wake in list(_runners):
        wake()


async def _nudge(session: AsyncSession, *where: ColumnElement[bool]) -> None:
    result: Any = await session.execute(
        update(Server)
        .where(*where)
        .values(next_step_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if result.rowcount:
        event.listen(session.sync_session, "after_commit", _wake_runners, once=True)


async def nudge_workflow(session: AsyncSession, server_id: uuid.UUID) -> None:
    """Make a server waiting on its agent due now (rather than at its next poll)."""
    await _nudge(session, Server.id == server_id, Server.state.in_(WAITING_ON_AGENT))


async def command_settled(session: AsyncSession, command: Command) -> None:
    """The command a step follows has settled: that step looks at it now."""
    state = FOLLOWED_COMMANDS[command.kind]
    await _nudge(session, Server.step_command_id == command.id, Server.state == state)


handlers.register_event_handler(handlers.AGENT_CONNECTED, nudge_workflow)
for _kind in FOLLOWED_COMMANDS:
    handlers.register_result_handler(_kind, command_settled)
