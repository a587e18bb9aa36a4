"""A server's health: every check's confirmed state, the history of changes, a run now."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from control_plane.api.context import Ctx
from control_plane.db.lookup import get_by_id
from control_plane.errors import InvalidInput
from control_plane.health import service
from control_plane.health.schemas import ChangeOut, HealthOut, HistoryOut, RunOut
from control_plane.health.sweep import Checker
from control_plane.servers.models import Server

router = APIRouter(prefix="/api/v1/servers/{server_id}/health", tags=["health"])


@router.get("")
async def get_health(server_id: uuid.UUID, ctx: Ctx) -> HealthOut:
    async with ctx.session() as session:
        server = await get_by_id(session, Server, server_id, "server")
        return await service.health_out(session, server)


@router.get("/history")
async def get_history(
    server_id: uuid.UUID,
    ctx: Ctx,
    start: Annotated[
        datetime | None, Query(alias="from", description="Changes at or after this time.")
    ] = None,
    end: Annotated[datetime | None, Query(alias="to", description="Changes before this.")] = None,
    limit: Annotated[
        int, Query(ge=1, le=1000, description="At most this many (oldest first).")
    ] = 500,
) -> HistoryOut:
    for name, value in (("from", start), ("to", end)):
        if value is not None and value.tzinfo is None:
            raise InvalidInput(
                "give a time zone (e.g. 2026-11-30T12:00:00Z)", field=f"query.{name}"
            )
    if start is not None and end is not None and end <= start:
        raise InvalidInput("'to' must be after 'from'", field="query.to")
    async with ctx.session() as session:
        server = await get_by_id(session, Server, server_id, "server")
        changes = await service.history(session, server.id, start, end, limit)
        return HistoryOut(server_id=server.id, items=[ChangeOut.model_validate(c) for c in changes])


@router.post("/run")
async def run_checks(server_id: uuid.UUID, ctx: Ctx) -> RunOut:
    """Run the server's checks now (DNS drift included) and answer with what they found and
    the confirmed states after them. Takes as long as the probes (at most their timeouts)."""
    async with ctx.session() as session:
        await get_by_id(session, Server, server_id, "server")  # the caller may see it
    results = await Checker(ctx.db, ctx.settings).run_now(server_id)
    async with ctx.session() as session:
        server = await get_by_id(session, Server, server_id, "server")
        return service.run_out(await service.health_out(session, server), results)
