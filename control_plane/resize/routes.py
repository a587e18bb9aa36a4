"""Recommendations and resizes of a server (thin over ``service``)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response, status

from control_plane.api.context import Ctx
from control_plane.db.lookup import get_by_id
from control_plane.incidents.routes import actor_name
from control_plane.resize import service
from control_plane.resize.schemas import RecommendationOut, ResizeAccepted, ResizeIn, ResizeOut
from control_plane.schemas import After, Limit, PageOut
from control_plane.servers.models import Server

router = APIRouter(prefix="/api/v1/servers/{server_id}", tags=["resize"])


@router.get("/recommendations")
async def get_recommendation(server_id: uuid.UUID, ctx: Ctx) -> RecommendationOut:
    """The cheapest plan of the server's provider that holds p90 usage × headroom of CPU,
    memory and disk over the last MAILFLEET_RECOMMENDATION_WINDOW_DAYS (hourly), up or down,
    with the monthly price difference and the evidence; `unknown` with the reason when
    there is not enough data."""
    async with ctx.session() as session:
        server = await get_by_id(session, Server, server_id, "server")
        return await service.recommendation(session, ctx.settings, ctx.providers, server)


@router.post("/resize", status_code=status.HTTP_202_ACCEPTED)
async def resize(
    server_id: uuid.UUID, data: ResizeIn, ctx: Ctx, response: Response
) -> ResizeAccepted:
    """Move the server to another plan of its provider. `dry_run: true` answers the preview
    (price, difference, expected downtime, steps; 200) and changes nothing; otherwise the
    resize starts (202): provider resize, wait, verify, confirm, record — a failure reverts
    it. 409 while the server is not ready or another resize or IP switch runs."""
    async with ctx.session() as session:
        server = await get_by_id(session, Server, server_id, "server")
        preview, started = await service.request_resize(
            session, ctx.settings, ctx.providers, server, data, actor_name(ctx)
        )
        if started is None:
            response.status_code = status.HTTP_200_OK
            return ResizeAccepted(preview=preview, resize=None)
        return ResizeAccepted(preview=preview, resize=await service.resize_out(session, started))


@router.get("/resizes")
async def list_resizes(
    server_id: uuid.UUID, ctx: Ctx, after: After = None, limit: Limit = 50
) -> PageOut[ResizeOut]:
    """The server's resizes (its plan history), oldest first, each with its steps."""
    async with ctx.session() as session:
        await get_by_id(session, Server, server_id, "server")
        page = await service.list_resizes(session, server_id, after, limit)
        items = [await service.resize_out(session, r) for r in page.items]
        return PageOut(items=items, next_after=page.next_after)


@router.get("/resizes/{resize_id}")
async def get_resize(server_id: uuid.UUID, resize_id: uuid.UUID, ctx: Ctx) -> ResizeOut:
    """One resize: its state, progress and steps (each: what it did or why it failed)."""
    async with ctx.session() as session:
        await get_by_id(session, Server, server_id, "server")
        found = await service.get_resize(session, server_id, resize_id)
        return await service.resize_out(session, found)
