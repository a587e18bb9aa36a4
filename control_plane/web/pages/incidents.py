"""Incidents: the list (open ones first, by state, newest first) and an incident's page with
its timeline, acknowledge, resolve and comment, on the services the incidents API uses."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal, get_args

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.status import HTTP_303_SEE_OTHER

from control_plane.db.base import utcnow
from control_plane.errors import MailFleetError
from control_plane.incidents import service
from control_plane.incidents.routes import actor_name
from control_plane.incidents.schemas import CommentIn, IncidentState
from control_plane.servers.service import server_names
from control_plane.tenants.service import get_tenant, tenant_names
from control_plane.web import forms
from control_plane.web.console import PageError, SignedIn, not_found, render
from control_plane.web.pages import NavLink

router = APIRouter(include_in_schema=False)
NAV = (NavLink("Incidents", "/ui/incidents", 50),)
PAGE_SIZE = 50
STATES: tuple[str, ...] = get_args(IncidentState)
ALL = "all"
API = "/api/v1/incidents/{incident_id}"


def _state(value: str | None) -> str:
    """Open first: with no choice the list shows the incidents nobody has taken yet."""
    state = value or "open"
    if state != ALL and state not in STATES:
        raise PageError(422, "Unknown state", f"There is no incident state {state!r}.")
    return state


@router.get("/ui/incidents")
async def incidents(
    request: Request,
    console: SignedIn,
    state: Annotated[str | None, Query(max_length=24)] = None,
    after: uuid.UUID | None = None,
) -> HTMLResponse:
    """The tenant's incidents (an admin's: every tenant's, or the chosen one's)."""
    state = _state(state)
    async with console.ctx.session() as session:
        tenant = await get_tenant(session, console.tenant_id) if console.tenant_id else None
        page = await service.list_incidents(
            session,
            state=None if state == ALL else state,
            server_id=None,
            after=after,
            limit=PAGE_SIZE,
            newest_first=True,
            tenant_id=console.tenant_id,
        )
        servers = await server_names(session, {i.server_id for i in page.items if i.server_id})
        owners = await tenant_names(session, {i.tenant_id for i in page.items})
    return render(
        request, "incidents.html", console=console, tenant=tenant, incidents=page.items,
        state=state, states=(*STATES, ALL), servers=servers, owners=owners,
        next_after=page.next_after,
    )  # fmt: skip


@router.get("/ui/incidents/{incident_id}")
async def incident_page(
    request: Request, console: SignedIn, incident_id: uuid.UUID
) -> HTMLResponse:
    """The incident and its timeline, as ``GET /api/v1/incidents/{id}`` answers it."""
    try:
        async with console.ctx.session() as session:
            detail = await service.detail_out(
                session, await service.get_incident(session, incident_id)
            )
            servers = await server_names(session, [detail.server_id] if detail.server_id else [])
    except MailFleetError as exc:
        raise not_found(exc) from None
    return render(
        request, "incident.html", console=console, incident=detail,
        server_name=servers.get(detail.server_id) if detail.server_id else None,
    )  # fmt: skip


def _back(incident_id: uuid.UUID) -> RedirectResponse:
    return RedirectResponse(f"/ui/incidents/{incident_id}", status_code=HTTP_303_SEE_OTHER)


@router.post("/ui/incidents/{incident_id}/comments")
async def comment(
    request: Request,
    console: SignedIn,
    incident_id: uuid.UUID,
    body: Annotated[str, Form(max_length=6000)] = "",
    csrf_token: Annotated[str | None, Form()] = None,
) -> RedirectResponse:
    """A comment on its timeline (as ``POST /api/v1/incidents/{id}/comments``)."""
    changing = forms.changing(request, console, csrf_token, "POST", f"{API}/comments", 201)
    async with changing as (ctx, session):
        incident = await service.get_incident(session, incident_id)
        text = forms.parse(CommentIn, body=body).body
        await service.comment(session, incident, utcnow(), actor_name(ctx), text)
    return _back(incident_id)


@router.post("/ui/incidents/{incident_id}/{action}")
async def change(
    request: Request,
    console: SignedIn,
    incident_id: uuid.UUID,
    action: Literal["acknowledge", "resolve"],
    csrf_token: Annotated[str | None, Form()] = None,
) -> RedirectResponse:
    """Acknowledge (stop escalating) or resolve it by hand, as
    ``POST /api/v1/incidents/{id}/acknowledge`` and ``…/resolve`` do."""
    changing = forms.changing(request, console, csrf_token, "POST", f"{API}/{action}", 200)
    async with changing as (ctx, session):
        incident = await service.lock_incident(session, incident_id)
        if action == "acknowledge":
            await service.acknowledge(session, incident, utcnow(), actor_name(ctx))
        else:
            await service.resolve_by(session, incident, utcnow(), actor_name(ctx))
    return _back(incident_id)
