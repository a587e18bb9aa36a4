from __future__ import annotations

import time
import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from control_plane.api.context import Ctx
from control_plane.commands import handlers, service
from control_plane.commands.models import FINAL_STATES
from control_plane.commands.schemas import CommandCreate, CommandOut, CommandState
from control_plane.schemas import After, Limit, PageOut
from control_plane.servers.service import get_server
from control_plane.waiting import woken

router = APIRouter(prefix="/api/v1/servers/{server_id}/commands", tags=["commands"])


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_command(
    server_id: uuid.UUID, body: CommandCreate, ctx: Ctx, response: Response
) -> CommandOut:
    """Queue a command; an offline agent gets it when it reconnects."""
    async with ctx.session() as session:
        server = await get_server(session, server_id)
        command, created = await service.create_command(session, server, body)
        out = CommandOut.of(command)
    if not created:
        response.status_code = status.HTTP_200_OK  # an idempotent repeat
    handlers.wake(server_id)
    return out


@router.get("")
async def list_commands(
    server_id: uuid.UUID,
    ctx: Ctx,
    state: CommandState | None = None,
    after: After = None,
    limit: Limit = 100,
) -> PageOut[CommandOut]:
    async with ctx.session() as session:
        await get_server(session, server_id)
        page = await service.list_commands(session, server_id, state, after, limit)
        return PageOut(items=[CommandOut.of(c) for c in page.items], next_after=page.next_after)


@router.get("/{command_id}")
async def get_command(
    server_id: uuid.UUID,
    command_id: uuid.UUID,
    ctx: Ctx,
    wait_seconds: Annotated[
        float, Query(ge=0, le=60, description="Hold the request until the command ends.")
    ] = 0,
) -> CommandOut:
    """State, progress and result of one command; with ``wait_seconds``, a long poll."""
    deadline = time.monotonic() + wait_seconds
    while True:
        with ctx.hub.watching(command_id) as settled:
            async with ctx.session() as session:
                out = CommandOut.of(await service.get_command(session, server_id, command_id))
            remaining = deadline - time.monotonic()
            if out.state in FINAL_STATES or remaining <= 0:
                return out
            # woken at once when this replica stores the result or another's is notified;
            # re-read now and then only in case a wake-up was lost (re-reading twice a
            # second made a backlog of long polls the plane's biggest cost under load)
            recheck = ctx.settings.command_wait_recheck_seconds
            await woken(settled, min(remaining, recheck))


@router.post("/{command_id}/cancel")
async def cancel_command(server_id: uuid.UUID, command_id: uuid.UUID, ctx: Ctx) -> CommandOut:
    async with ctx.session() as session:
        command = await service.get_command(session, server_id, command_id)
        out = CommandOut.of(await service.request_cancel(session, command))
    handlers.wake(server_id)
    if out.state in FINAL_STATES:  # cancelled before delivery: wake this replica's waiters
        ctx.hub.command_settled(command_id)
    return out
