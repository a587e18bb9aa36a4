"""Deleting, retrying and following servers' provisioning; their SSH key; the providers."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Request, status
from fastapi.responses import StreamingResponse

from control_plane.api.context import AdminCtx, Ctx
from control_plane.commands import handlers
from control_plane.commands.schemas import CommandOut
from control_plane.errors import InvalidInput
from control_plane.provisioning import events, service
from control_plane.provisioning.schemas import ProviderOut, provider_out
from control_plane.provisioning.stream import follow
from control_plane.schemas import After, Limit, PageOut
from control_plane.servers.routes import server_response
from control_plane.servers.schemas import (
    ServerEventOut,
    ServerOut,
    SshCredentialIn,
    SshKeyOut,
    SshKeyRotationOut,
)
from control_plane.servers.service import get_server

router = APIRouter(prefix="/api/v1", tags=["provisioning"])
EVENT_STREAM = "text/event-stream"


@router.delete("/servers/{server_id}", status_code=status.HTTP_202_ACCEPTED)
async def delete_server(server_id: uuid.UUID, ctx: Ctx) -> ServerOut:
    """Deprovision: cancel any provisioning, terminate the VPS, revoke the agent, destroy
    its secrets, then forget the server. Follow it in its events; repeating is harmless.
    A manual or adopted (``ssh``) server's machine is the customer's: it is left running,
    untouched; only MailFleet's DNS records, the agent's certificates and the secrets go."""
    async with ctx.session() as session:
        server = await service.deprovision(
            session, await get_server(session, server_id), ctx.settings
        )
        out = server_response(ctx, server)
    ctx.wake_workflow()
    return out


@router.post("/servers/{server_id}/retry")
async def retry_server(server_id: uuid.UUID, ctx: Ctx) -> ServerOut:
    """Run a failed server's failed step again."""
    async with ctx.session() as session:
        server = await service.retry(session, await get_server(session, server_id), ctx.settings)
        out = server_response(ctx, server)
    ctx.wake_workflow()
    return out


@router.get(
    "/servers/{server_id}/events",
    response_model=PageOut[ServerEventOut],
    responses={200: {"content": {EVENT_STREAM: {"schema": {"type": "string"}}}}},
)
async def server_events(
    server_id: uuid.UUID,
    request: Request,
    ctx: Ctx,
    after: After = None,
    limit: Limit = 100,
    last_event_id: Annotated[str | None, Header()] = None,
) -> PageOut[ServerEventOut] | StreamingResponse:
    """The server's step history; with ``Accept: text/event-stream``, a live stream of it
    that ends once the server is ready, failed or gone."""
    async with ctx.session() as session:
        await get_server(session, server_id)
        if EVENT_STREAM not in request.headers.get("accept", ""):
            page = await events.list_events(session, server_id, after, limit)
            items = [ServerEventOut.model_validate(e, from_attributes=True) for e in page.items]
            return PageOut(items=items, next_after=page.next_after)
    if last_event_id:
        try:
            after = uuid.UUID(last_event_id)
        except ValueError:
            raise InvalidInput(
                "Last-Event-ID must be an event id", field="header.last-event-id"
            ) from None
    return StreamingResponse(
        follow(ctx.session, server_id, after),
        media_type=EVENT_STREAM,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.put("/servers/{server_id}/ssh-credential")
async def replace_ssh_credential(
    server_id: uuid.UUID, body: SshCredentialIn, ctx: Ctx
) -> ServerOut:
    """An adopted server's new SSH credential (one of ``ssh_private_key``, ``ssh_password``),
    kept in Vault and never shown again. If the agent's install had failed (a refused
    credential), it runs again with the new one."""
    async with ctx.session() as session:
        server = await service.replace_ssh_credential(
            session,
            ctx.vault,
            ctx.settings,
            await get_server(session, server_id),
            body.ssh_private_key,
            body.ssh_password,
        )
        out = server_response(ctx, server)
    ctx.wake_workflow()
    return out


@router.delete("/servers/{server_id}/ssh-host-key")
async def clear_ssh_host_key(server_id: uuid.UUID, ctx: AdminCtx) -> ServerOut:
    """Forget the server's pinned SSH host key (admin; after a legitimate reinstall of its
    machine changed the key): the next login, e.g. ``POST …/retry``, pins the key it meets."""
    async with ctx.session() as session:
        server = await service.clear_ssh_host_key(session, await get_server(session, server_id))
        return server_response(ctx, server)


@router.post("/servers/{server_id}/ssh-key", status_code=status.HTTP_201_CREATED)
async def download_ssh_key(server_id: uuid.UUID, ctx: Ctx) -> SshKeyOut:
    """The server's admin SSH private key — once. Later calls answer 409."""
    async with ctx.session() as session:
        pair = await service.take_ssh_key(session, ctx.vault, await get_server(session, server_id))
    return SshKeyOut(private_key=pair.private_key, public_key=pair.public_key)


@router.post("/servers/{server_id}/ssh-key/rotate", status_code=status.HTTP_202_ACCEPTED)
async def rotate_ssh_key(server_id: uuid.UUID, ctx: Ctx) -> SshKeyRotationOut:
    """A new admin key pair; the agent installs it (follow the command). The new private key
    can then be downloaded once with ``POST …/ssh-key``."""
    async with ctx.session() as session:
        server = await get_server(session, server_id)
        pair, command = await service.rotate_ssh_key(session, ctx.vault, server)
        out = SshKeyRotationOut(public_key=pair.public_key, command=CommandOut.of(command))
    handlers.wake(server_id)
    return out


@router.get("/providers")
async def list_providers(ctx: Ctx) -> list[ProviderOut]:
    """The providers this control plane offers, with their regions and plans."""
    return [await provider_out(ctx.providers, name) for name in await ctx.providers.names()]
