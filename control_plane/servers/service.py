"""Server records; ``provisioning.service.order_server`` creates them and starts their workflow."""

from __future__ import annotations

import uuid
from collections.abc import Collection

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.lookup import get_by_id
from control_plane.db.pagination import Page, paginate
from control_plane.db.writes import flush_unique
from control_plane.errors import InvalidInput, NotFound
from control_plane.mail.names import idna_name
from control_plane.servers.models import Server
from control_plane.servers.schemas import ServerCreate
from control_plane.tenants.service import get_tenant
from control_plane.workspaces.models import Workspace


async def create_server(session: AsyncSession, tenant_id: uuid.UUID, data: ServerCreate) -> Server:
    await get_tenant(session, tenant_id, field="body.tenant_id")
    if data.workspace_id is not None:
        workspace = await session.scalar(
            select(Workspace).where(
                Workspace.id == data.workspace_id, Workspace.tenant_id == tenant_id
            )
        )
        if workspace is None:
            raise NotFound("workspace", data.workspace_id, field="body.workspace_id")
    server = Server(
        tenant_id=tenant_id,
        workspace_id=data.workspace_id,
        name=data.name,
        provider=data.provider,
        region=data.region,
        plan=data.plan,
        mail_stack=data.mail_stack,
        mail_hostname=mail_hostname(data),
    )
    session.add(server)
    await flush_unique(
        session, "body.name", f"this tenant already has a server named {data.name!r}"
    )
    await session.refresh(server)
    return server


def mail_hostname(data: ServerCreate) -> str | None:
    """The mail host name in IDNA form; required (and checked) when the server runs MailU."""
    if data.mail_hostname is None:
        if data.mail_stack == "mailu":
            raise InvalidInput(
                "mail_hostname is required with mail_stack mailu (or choose mail_stack none)",
                field="body.mail_hostname",
            )
        return None
    return idna_name(data.mail_hostname, "body.mail_hostname", min_labels=3)


async def get_server(session: AsyncSession, server_id: uuid.UUID) -> Server:
    return await get_by_id(session, Server, server_id, "server")


async def list_servers(
    session: AsyncSession,
    tenant_id: uuid.UUID | None,
    workspace_id: uuid.UUID | None,
    after: uuid.UUID | None,
    limit: int,
    state: str | None = None,
) -> Page[Server]:
    stmt = select(Server)
    if tenant_id is not None:
        stmt = stmt.where(Server.tenant_id == tenant_id)
    if workspace_id is not None:
        stmt = stmt.where(Server.workspace_id == workspace_id)
    if state is not None:
        stmt = stmt.where(Server.state == state)
    return await paginate(session, stmt, Server.id, after, limit)


async def server_names(
    session: AsyncSession, server_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, str]:
    """Names of many servers at once (a page of incidents links each to its server); a
    server the caller may not see, or one deleted since, is absent."""
    rows = await session.execute(select(Server.id, Server.name).where(Server.id.in_(server_ids)))
    return {server_id: name for server_id, name in rows}


async def count_by_state(session: AsyncSession, tenant_id: uuid.UUID | None) -> dict[str, int]:
    """How many of the (tenant's) servers are in each provisioning state."""
    stmt = select(Server.state, func.count()).group_by(Server.state)
    if tenant_id is not None:
        stmt = stmt.where(Server.tenant_id == tenant_id)
    return {state: count for state, count in await session.execute(stmt)}


async def count_machines(session: AsyncSession, provider: str) -> int:
    """Servers of ``provider`` that have a machine (an instance id): what runs on without us."""
    stmt = select(func.count()).where(Server.provider == provider, Server.instance_id.is_not(None))
    return int(await session.scalar(stmt) or 0)
