"""Incidents with their timeline (acknowledge, resolve, comment), silences, and servers'
maintenance windows. Tenant keys see their own; admin keys see every tenant's."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, status

from control_plane.api.context import Ctx, RequestContext
from control_plane.db.base import utcnow
from control_plane.db.lookup import get_by_id
from control_plane.incidents import service, silences
from control_plane.incidents.models import MaintenanceWindow
from control_plane.incidents.schemas import (
    CommentIn,
    IncidentDetailOut,
    IncidentOut,
    IncidentState,
    MaintenanceWindowIn,
    MaintenanceWindowOut,
    SilenceIn,
    SilenceOut,
    TimelineEntryOut,
)
from control_plane.schemas import After, Limit, PageOut
from control_plane.servers.models import Server

router = APIRouter(prefix="/api/v1/incidents", tags=["incidents"])
silences_router = APIRouter(prefix="/api/v1/silences", tags=["incidents"])
windows_router = APIRouter(
    prefix="/api/v1/servers/{server_id}/maintenance-windows", tags=["incidents"]
)


def actor_name(ctx: RequestContext) -> str:
    """Who did it, as the timeline and silences show it: the API key's name and id."""
    principal = ctx.principal
    name = principal.key_name or "api key"
    return f"{name} ({principal.key_id})"


@router.get("")
async def list_incidents(
    ctx: Ctx,
    state: IncidentState | None = None,
    server_id: uuid.UUID | None = None,
    tenant_id: uuid.UUID | None = None,
    after: After = None,
    limit: Limit = 100,
    newest_first: bool = False,
) -> PageOut[IncidentOut]:
    """Oldest first, or (``newest_first=true``) newest first; ``after`` pages either way.
    Admin keys may narrow to one tenant's."""
    async with ctx.session() as session:
        page = await service.list_incidents(
            session,
            state=state,
            server_id=server_id,
            after=after,
            limit=limit,
            newest_first=newest_first,
            tenant_id=tenant_id,
        )
        return PageOut(
            items=[service.incident_out(i) for i in page.items], next_after=page.next_after
        )


@router.get("/{incident_id}")
async def get_incident(incident_id: uuid.UUID, ctx: Ctx) -> IncidentDetailOut:
    """The incident with its timeline: what happened, who was told (each channel's delivery
    result), what held it back, who acknowledged, commented and resolved it."""
    async with ctx.session() as session:
        return await service.detail_out(session, await service.get_incident(session, incident_id))


@router.post("/{incident_id}/acknowledge")
async def acknowledge(incident_id: uuid.UUID, ctx: Ctx) -> IncidentDetailOut:
    """Stop escalating; the channels told so far hear who took it (409 if resolved)."""
    async with ctx.session() as session:
        incident = await service.lock_incident(session, incident_id)
        await service.acknowledge(session, incident, utcnow(), actor_name(ctx))
        return await service.detail_out(session, incident)


@router.post("/{incident_id}/resolve")
async def resolve(incident_id: uuid.UUID, ctx: Ctx) -> IncidentDetailOut:
    """Resolve by hand; if its check still fails, the next failing result opens a new one."""
    async with ctx.session() as session:
        incident = await service.lock_incident(session, incident_id)
        await service.resolve_by(session, incident, utcnow(), actor_name(ctx))
        return await service.detail_out(session, incident)


@router.post("/{incident_id}/comments", status_code=status.HTTP_201_CREATED)
async def add_comment(incident_id: uuid.UUID, body: CommentIn, ctx: Ctx) -> TimelineEntryOut:
    async with ctx.session() as session:
        incident = await service.get_incident(session, incident_id)
        event = await service.comment(session, incident, utcnow(), actor_name(ctx), body.body)
        return TimelineEntryOut.model_validate(event)


@silences_router.post("", status_code=status.HTTP_201_CREATED)
async def create_silence(body: SilenceIn, ctx: Ctx) -> SilenceOut:
    """Hold back notifications of matching incidents (they are still recorded)."""
    tenant_id = ctx.owning_tenant(body.tenant_id)
    async with ctx.session() as session:
        return silences.silence_out(
            await silences.create_silence(session, tenant_id, body, actor_name(ctx), utcnow())
        )


@silences_router.get("")
async def list_silences(
    ctx: Ctx, active: bool = False, after: After = None, limit: Limit = 100
) -> PageOut[SilenceOut]:
    """Every silence, or (``active=true``) the ones holding now."""
    async with ctx.session() as session:
        page = await silences.list_silences(
            session, active_at=utcnow() if active else None, after=after, limit=limit
        )
        return PageOut(
            items=[silences.silence_out(s) for s in page.items], next_after=page.next_after
        )


@silences_router.get("/{silence_id}")
async def get_silence(silence_id: uuid.UUID, ctx: Ctx) -> SilenceOut:
    async with ctx.session() as session:
        return silences.silence_out(await silences.get_silence(session, silence_id))


@silences_router.post("/{silence_id}/expire")
async def expire_silence(silence_id: uuid.UUID, ctx: Ctx) -> SilenceOut:
    """End it now; held incidents are notified at the engine's next round."""
    async with ctx.session() as session:
        silence = await silences.get_silence(session, silence_id)
        return silences.silence_out(await silences.expire_silence(session, silence, utcnow()))


@silences_router.delete("/{silence_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_silence(silence_id: uuid.UUID, ctx: Ctx) -> None:
    async with ctx.session() as session:
        await session.delete(await silences.get_silence(session, silence_id))


def window_out(window: MaintenanceWindow) -> MaintenanceWindowOut:
    now = utcnow()
    fields = {c: getattr(window, c) for c in MaintenanceWindowOut.model_fields if c != "active"}
    return MaintenanceWindowOut.model_validate(
        {**fields, "active": window.starts_at <= now < window.ends_at}
    )


@windows_router.post("", status_code=status.HTTP_201_CREATED)
async def create_window(
    server_id: uuid.UUID, body: MaintenanceWindowIn, ctx: Ctx
) -> MaintenanceWindowOut:
    """A planned outage: the server's incidents are recorded but nobody is notified."""
    async with ctx.session() as session:
        server = await get_by_id(session, Server, server_id, "server")
        return window_out(
            await silences.create_window(session, server, body, actor_name(ctx), utcnow())
        )


@windows_router.get("")
async def list_windows(
    server_id: uuid.UUID, ctx: Ctx, after: After = None, limit: Limit = 100
) -> PageOut[MaintenanceWindowOut]:
    async with ctx.session() as session:
        server = await get_by_id(session, Server, server_id, "server")
        page = await silences.list_windows(session, server, after, limit)
        return PageOut(items=[window_out(w) for w in page.items], next_after=page.next_after)


@windows_router.delete("/{window_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_window(server_id: uuid.UUID, window_id: uuid.UUID, ctx: Ctx) -> None:
    async with ctx.session() as session:
        server = await get_by_id(session, Server, server_id, "server")
        await session.delete(await silences.get_window(session, server, window_id))
