from __future__ import annotations

import uuid
from datetime import timedelta

from fastapi import APIRouter, status

from control_plane.api.context import AdminCtx, Ctx, RequestContext
from control_plane.db.base import utcnow
from control_plane.enrollment import service as enrollment
from control_plane.enrollment.agent_config import issue_join_config
from control_plane.provisioning import service as provisioning
from control_plane.schemas import After, Limit, PageOut
from control_plane.servers import service
from control_plane.servers.models import Server
from control_plane.servers.schemas import JoinTokenOut, ServerCreate, ServerOut
from control_plane.servers.status import server_out

router = APIRouter(prefix="/api/v1/servers", tags=["servers"])


def server_response(ctx: RequestContext, server: Server) -> ServerOut:
    unknown_after = timedelta(seconds=ctx.settings.agent_unknown_after_seconds)
    return server_out(server, utcnow(), unknown_after)


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_server(body: ServerCreate, ctx: Ctx) -> ServerOut:
    """Order a server: MailFleet rents it and follows it to ``ready`` (see its events).

    A ``manual`` server is one the customer made: it waits in ``enrolling`` for an agent
    started with a join token (``POST …/join-tokens``). An ``ssh`` server is a machine the
    customer has, adopted: MailFleet logs in at ``address`` as root with the key or password
    given (kept in Vault, never shown again), installs the agent and follows it to ``ready``.
    """
    tenant_id = ctx.owning_tenant(body.tenant_id)
    async with ctx.session() as session:
        server = await provisioning.order_server(
            session, ctx.providers, ctx.settings, tenant_id, body
        )
        out = server_response(ctx, server)
    ctx.wake_workflow()
    return out


@router.get("")
async def list_servers(
    ctx: Ctx,
    tenant_id: uuid.UUID | None = None,
    workspace_id: uuid.UUID | None = None,
    after: After = None,
    limit: Limit = 100,
) -> PageOut[ServerOut]:
    async with ctx.session() as session:
        page = await service.list_servers(session, tenant_id, workspace_id, after, limit)
        return PageOut(
            items=[server_response(ctx, s) for s in page.items], next_after=page.next_after
        )


@router.get("/{server_id}")
async def get_server(server_id: uuid.UUID, ctx: Ctx) -> ServerOut:
    async with ctx.session() as session:
        return server_response(ctx, await service.get_server(session, server_id))


@router.post("/{server_id}/join-tokens", status_code=status.HTTP_201_CREATED)
async def create_join_token(server_id: uuid.UUID, ctx: AdminCtx) -> JoinTokenOut:
    """A one-time token (and ready agent.toml) for this server's agent to enroll with."""
    async with ctx.session() as session:
        server = await service.get_server(session, server_id)
        issued = await issue_join_config(session, ctx.pki, ctx.settings, server)
    return JoinTokenOut.model_validate(issued)


@router.post("/{server_id}/revoke-agent")
async def revoke_agent(server_id: uuid.UUID, ctx: Ctx) -> ServerOut:
    """Revoke the agent's certificates; its live stream closes and reconnects are refused."""
    async with ctx.session() as session:
        server = await service.get_server(session, server_id)
        serials = await enrollment.revoke_agent(session, server)
        out = server_response(ctx, server)
    ctx.hub.close(server_id, "agent revoked")
    await enrollment.revoke_in_vault(ctx.pki, serials)
    return out
