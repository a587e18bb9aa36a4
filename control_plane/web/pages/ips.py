"""A server's IPs & reputation section: each live address with its warm-up, today's
allowance (sent, cap, held), its DNSBL results per list, and the actions an admin uses —
check reputation now, pause and resume sending — on the services the IP API uses."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.status import HTTP_303_SEE_OTHER

from control_plane.api.context import RequestContext
from control_plane.db.base import utcnow
from control_plane.dnsbl.routes import reputation
from control_plane.dnsbl.schemas import ReputationOut
from control_plane.dnsbl.sweep import check_ip_now
from control_plane.errors import MailFleetError, NotFound
from control_plane.incidents.routes import actor_name
from control_plane.ips import operations
from control_plane.ips import service as ips
from control_plane.ips.models import IpAddress
from control_plane.ips.schemas import AllowanceOut, IpOut, PauseIn
from control_plane.web.console import (
    SignedIn,
    not_found,
    render,
    visible_server,
)
from control_plane.web.forms import changing, parse
from control_plane.web.pages import ServerSection

router = APIRouter(include_in_schema=False)
SERVER_SECTIONS = (ServerSection("ips", "IPs & reputation", 30),)
API = "/api/v1/ips/{ip}"


@dataclass(frozen=True)
class IpView:
    ip: IpOut
    allowance: AllowanceOut
    reputation: ReputationOut


async def ip_views(
    session: AsyncSession, ctx: RequestContext, server_id: uuid.UUID
) -> list[IpView]:
    """Each live address as ``GET /ips/{ip}``, ``…/allowance`` and ``…/reputation`` show it
    (reputation without its history: the section shows the latest results)."""
    now, views = utcnow(), []
    for row in await ips.live_ips(session, server_id):
        views.append(
            IpView(
                ip=operations.ip_out(row, now),
                allowance=await operations.allowance(session, row, now, ctx.settings),
                reputation=await reputation(session, row, ctx.settings, 0),
            )
        )
    return views


@router.get("/ui/servers/{server_id}/ips")
async def ips_section(request: Request, console: SignedIn, server_id: uuid.UUID) -> HTMLResponse:
    server = await visible_server(console, server_id)
    async with console.ctx.session() as session:
        views = await ip_views(session, console.ctx, server.id)
    return render(request, "ips_section.html", console=console, server=server, views=views)


async def _server_ip(session: AsyncSession, server_id: uuid.UUID, ip: str) -> IpAddress:
    """The live address if the key may see it and it is on that server (else 404)."""
    row = await ips.get_live(session, ip)
    if row.server_id != server_id:
        raise NotFound("IP address", ip)
    return row


def _back(server_id: uuid.UUID) -> RedirectResponse:
    """Back to the server page, where the section shows the change (a refusal is a page)."""
    return RedirectResponse(f"/ui/servers/{server_id}#section-ips", status_code=HTTP_303_SEE_OTHER)


@router.post("/ui/servers/{server_id}/ips/{ip}/reputation/check")
async def check_reputation(
    request: Request,
    console: SignedIn,
    server_id: uuid.UUID,
    ip: str,
    csrf_token: Annotated[str | None, Form()] = None,
) -> RedirectResponse:
    """The address on every list now (as ``POST /api/v1/ips/{ip}/reputation/check``)."""
    route = f"{API}/reputation/check"
    async with changing(request, console, csrf_token, "POST", route, 200) as (ctx, session):
        address = (await _server_ip(session, server_id, ip)).address
    try:
        await check_ip_now(ctx.db, ctx.settings, address)
    except MailFleetError as exc:  # its lookups are running already: 409
        raise not_found(exc) from None
    return _back(server_id)


@router.post("/ui/servers/{server_id}/ips/{ip}/pause")
async def pause(
    request: Request,
    console: SignedIn,
    server_id: uuid.UUID,
    ip: str,
    reason: Annotated[str, Form(max_length=600)] = "",
    csrf_token: Annotated[str | None, Form()] = None,
) -> RedirectResponse:
    """Hold new mail from the address (as ``POST /api/v1/ips/{ip}/pause``)."""
    async with changing(request, console, csrf_token, "POST", f"{API}/pause", 200) as (
        ctx,
        session,
    ):
        row = await _server_ip(session, server_id, ip)
        body = parse(PauseIn, reason=reason)
        await ips.pause(session, row, body.reason, actor_name(ctx), utcnow())
    return _back(server_id)


@router.post("/ui/servers/{server_id}/ips/{ip}/resume")
async def resume(
    request: Request,
    console: SignedIn,
    server_id: uuid.UUID,
    ip: str,
    csrf_token: Annotated[str | None, Form()] = None,
) -> RedirectResponse:
    """Let the address send again (as ``POST /api/v1/ips/{ip}/resume``)."""
    async with changing(request, console, csrf_token, "POST", f"{API}/resume", 200) as (
        ctx,
        session,
    ):
        row = await _server_ip(session, server_id, ip)
        await ips.resume(session, row, actor_name(ctx), utcnow())
    return _back(server_id)
