"""The IP inventory: addresses with role, warmup, pause and listing; adding and removing
them through the provider; warmup plans, pause/resume and today's allowance."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response, status

from control_plane.api.context import Ctx
from control_plane.db.base import utcnow
from control_plane.errors import NotFound
from control_plane.incidents.routes import actor_name
from control_plane.ips import operations, provider_ips, service
from control_plane.ips.schemas import (
    AllowanceOut,
    IpAddIn,
    IpDetailOut,
    IpOut,
    Listing,
    PauseIn,
    Role,
    WarmupIn,
)
from control_plane.schemas import After, Limit, PageOut

router = APIRouter(prefix="/api/v1", tags=["ips"])
NO_ADDRESS = IpAddIn()  # provider servers: no body needed


@router.get("/ips")
async def list_ips(
    ctx: Ctx,
    server_id: uuid.UUID | None = None,
    role: Role | None = None,
    listing: Listing | None = None,
    paused: bool | None = None,
    after: After = None,
    limit: Limit = 100,
) -> PageOut[IpOut]:
    """Live addresses (a tenant key sees its own, an admin key every tenant's)."""
    flt = operations.IpFilter(server_id=server_id, role=role, listing=listing, paused=paused)
    now = utcnow()
    async with ctx.session() as session:
        page = await operations.list_ips(session, flt, after, limit)
        return PageOut(
            items=[operations.ip_out(ip, now) for ip in page.items], next_after=page.next_after
        )


@router.get("/ips/{ip}")
async def get_ip(ip: str, ctx: Ctx) -> IpDetailOut:
    """The address with its history on its current server (newest first)."""
    async with ctx.session() as session:
        row = await service.get_live(session, ip)
        return await operations.detail_out(session, row, utcnow())


@router.post("/servers/{server_id}/ips", status_code=status.HTTP_201_CREATED)
async def add_ip(server_id: uuid.UUID, ctx: Ctx, body: IpAddIn = NO_ADDRESS) -> IpDetailOut:
    """The provider attaches one more address (a standby: no DNS, no mail until a switch);
    for a manual server, register the address its owner added (``address``)."""
    async with ctx.session() as session:
        found = await provider_ips.target(session, server_id)
    address = await provider_ips.add_address(
        ctx.db, ctx.providers, ctx.settings, found, body.address
    )
    async with ctx.session() as session:
        return await operations.detail_out(
            session, await service.get_live(session, address), utcnow()
        )


@router.delete("/servers/{server_id}/ips/{ip}", status_code=status.HTTP_204_NO_CONTENT)
async def remove_ip(server_id: uuid.UUID, ip: str, ctx: Ctx) -> Response:
    """Release a standby or retired address (409 for the sending or main address)."""
    async with ctx.session() as session:
        found = await provider_ips.target(session, server_id)
        row = await service.get_live(session, ip)
        if row.server_id != found.server_id:
            raise NotFound("IP address", ip)
        provider_ips.check_removable(row)
        address = row.address
    await provider_ips.remove_address(ctx.db, ctx.providers, ctx.settings, found, address)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.put("/ips/{ip}/warmup")
async def set_warmup(ip: str, body: WarmupIn, ctx: Ctx) -> IpDetailOut:
    """Start a warmup plan and/or set a cap for today only; the agent gets the new limits."""
    now = utcnow()
    async with ctx.session() as session:
        row = await service.get_live(session, ip)
        await operations.set_warmup(session, row, body, actor_name(ctx), now)
        return await operations.detail_out(session, row, now)


@router.post("/ips/{ip}/pause")
async def pause(ip: str, body: PauseIn, ctx: Ctx) -> IpDetailOut:
    """Hold new outbound SMTP from the address (mail waits in the queue, nothing is lost)."""
    now = utcnow()
    async with ctx.session() as session:
        row = await service.get_live(session, ip)
        await service.pause(session, row, body.reason, actor_name(ctx), now)
        return await operations.detail_out(session, row, now)


@router.post("/ips/{ip}/resume")
async def resume(ip: str, ctx: Ctx) -> IpDetailOut:
    """Let the address send again (today's cap, if any, still holds)."""
    now = utcnow()
    async with ctx.session() as session:
        row = await service.get_live(session, ip)
        await service.resume(session, row, actor_name(ctx), now)
        return await operations.detail_out(session, row, now)


@router.get("/ips/{ip}/allowance")
async def allowance(ip: str, ctx: Ctx) -> AllowanceOut:
    """Today's (UTC) cap, sent, remaining and whether sending from it is held."""
    async with ctx.session() as session:
        row = await service.get_live(session, ip)
        return await operations.allowance(session, row, utcnow(), ctx.settings)
