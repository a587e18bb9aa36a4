"""A server's resize section: the recommendation (``GET …/recommendations``), its provider's
plans, the preview of a move (``POST …/resize`` as a dry run: price, difference, downtime,
steps), the confirmed resize itself, and past resizes — on the resize API's services."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.status import HTTP_303_SEE_OTHER

from control_plane.errors import MailFleetError
from control_plane.incidents.routes import actor_name
from control_plane.provisioning.providers.base import Plan
from control_plane.provisioning.registry import OWNED_BY_CUSTOMER
from control_plane.resize import service
from control_plane.resize.schemas import ResizeIn, ResizePreview
from control_plane.servers.models import Server
from control_plane.servers.service import get_server
from control_plane.web.console import (
    Console,
    PageError,
    SignedIn,
    not_found,
    render,
    visible_server,
)
from control_plane.web.forms import changing, parse
from control_plane.web.pages import ServerSection

router = APIRouter(include_in_schema=False)
SERVER_SECTIONS = (ServerSection("resize", "Resize", 50),)
PAGE_SIZE = 50
API = "/api/v1/servers/{server_id}/resize"


async def plans_of(console: Console, server: Server) -> tuple[tuple[Plan, ...], str | None]:
    """The provider's plans to choose from, or why there are none to show."""
    if server.provider in OWNED_BY_CUSTOMER:
        owned = f"a {server.provider} server is the customer's machine"
        return (), f"{owned}: MailFleet cannot resize it"
    try:
        return (await console.ctx.providers.catalog(server.provider)).plans, None
    except MailFleetError as exc:
        return (), f"{server.provider}'s plans cannot be listed now: {exc.detail}"


@router.get("/ui/servers/{server_id}/resize")
async def resize_section(
    request: Request, console: SignedIn, server_id: uuid.UUID, after: uuid.UUID | None = None
) -> HTMLResponse:
    """The recommendation, the plan picker and the server's resizes (oldest first)."""
    server = await visible_server(console, server_id)
    ctx = console.ctx
    try:
        async with ctx.session() as session:
            advice = await service.recommendation(session, ctx.settings, ctx.providers, server)
            page = await service.list_resizes(session, server_id, after, PAGE_SIZE)
            resizes = [await service.resize_out(session, r) for r in page.items]
    except MailFleetError as exc:
        raise not_found(exc) from None
    plans, why_none = await plans_of(console, server)
    return render(
        request, "resize_section.html", console=console, server=server, advice=advice,
        plans=[p for p in plans if p.id != server.plan], why_none=why_none, resizes=resizes,
        next_after=page.next_after,
    )  # fmt: skip


@router.get("/ui/servers/{server_id}/resize/preview")
async def resize_preview(
    request: Request,
    console: SignedIn,
    server_id: uuid.UUID,
    plan: Annotated[str, Query(max_length=64)] = "",
) -> HTMLResponse:
    """What moving to ``plan`` does and costs (the API's dry run: nothing changes), with
    the form that confirms it; a refusal (busy, not ready, disk too small) is its page."""
    preview, server = await _request(console, server_id, parse(ResizeIn, plan=plan, dry_run=True))
    return render(request, "resize_preview.html", console=console, server=server, preview=preview)


async def _request(
    console: Console, server_id: uuid.UUID, data: ResizeIn
) -> tuple[ResizePreview, Server]:
    """``service.request_resize`` as the API calls it (the server read in its transaction)."""
    ctx = console.ctx
    try:
        async with ctx.session() as session:
            server = await get_server(session, server_id)
            preview, _ = await service.request_resize(
                session, ctx.settings, ctx.providers, server, data, actor_name(ctx)
            )
    except MailFleetError as exc:
        raise not_found(exc) from None
    return preview, server


@router.post("/ui/servers/{server_id}/resize")
async def resize(
    request: Request,
    console: SignedIn,
    server_id: uuid.UUID,
    plan: Annotated[str, Form(max_length=64)] = "",
    confirm: Annotated[str, Form(max_length=8)] = "",
    csrf_token: Annotated[str | None, Form()] = None,
) -> RedirectResponse:
    """Start the resize (as ``POST /api/v1/servers/{id}/resize``), once confirmed."""
    async with changing(request, console, csrf_token, "POST", API, 202) as (ctx, session):
        server = await get_server(session, server_id)  # another tenant's: 404 first
        data = parse(ResizeIn, plan=plan)
        if confirm != "yes":
            raise PageError(422, "Not confirmed", "Tick the confirmation to resize the server.")
        await service.request_resize(
            session, ctx.settings, ctx.providers, server, data, actor_name(ctx)
        )
    return RedirectResponse(
        f"/ui/servers/{server_id}#section-resize", status_code=HTTP_303_SEE_OTHER
    )
