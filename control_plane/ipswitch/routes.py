"""IP switches of a server: start one, follow its steps, list them."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, status

from control_plane.api.context import Ctx
from control_plane.db.lookup import get_by_id
from control_plane.incidents.routes import actor_name
from control_plane.ipswitch import service
from control_plane.ipswitch.schemas import IpSwitchIn, IpSwitchOut
from control_plane.schemas import After, Limit, PageOut
from control_plane.servers.models import Server

router = APIRouter(prefix="/api/v1/servers/{server_id}/ip-switches", tags=["ip-switches"])


@router.post("", status_code=status.HTTP_202_ACCEPTED)
async def start_switch(server_id: uuid.UUID, data: IpSwitchIn, ctx: Ctx) -> IpSwitchOut:
    """Move the server's outbound mail to another of its addresses: PTR, DNS, the agent's
    SNAT, a verified egress, drain; any failed step rolls back the earlier ones. Follow it
    with GET; 409 while another switch of the server runs."""
    async with ctx.session() as session:
        server = await get_by_id(session, Server, server_id, "server")
        switch = await service.request_switch(session, ctx.settings, server, data, actor_name(ctx))
        return await service.switch_out(session, switch)


@router.get("")
async def list_switches(
    server_id: uuid.UUID, ctx: Ctx, after: After = None, limit: Limit = 50
) -> PageOut[IpSwitchOut]:
    """The server's switches, oldest first, each with its steps."""
    async with ctx.session() as session:
        await get_by_id(session, Server, server_id, "server")
        page = await service.list_switches(session, server_id, after, limit)
        items = [await service.switch_out(session, switch) for switch in page.items]
        return PageOut(items=items, next_after=page.next_after)


@router.get("/{switch_id}")
async def get_switch(server_id: uuid.UUID, switch_id: uuid.UUID, ctx: Ctx) -> IpSwitchOut:
    """The switch's state and steps (each: state, times, what it did or why it failed)."""
    async with ctx.session() as session:
        await get_by_id(session, Server, server_id, "server")
        switch = await service.get_switch(session, server_id, switch_id)
        return await service.switch_out(session, switch)
