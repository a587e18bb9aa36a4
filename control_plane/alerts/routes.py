"""Alert channels, escalation policies, policy assignment, the notification feed, and the
SMTP relay's password. Thin over the services; tenant keys see only their own rows."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, status
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.alerts import channels, delivery, feed, policies
from control_plane.alerts.schemas import (
    AssignmentOut,
    AssignPolicy,
    ChannelCreate,
    ChannelOut,
    ChannelUpdate,
    DeliveryOut,
    MarkRead,
    NotificationDetail,
    NotificationOut,
    PolicyCreate,
    PolicyOut,
    PolicyUpdate,
    ReadOut,
    RelayOut,
    RelayPassword,
)
from control_plane.alerts.service import effective_policy, send_test
from control_plane.api.context import AdminCtx, Ctx, RequestContext
from control_plane.db.base import utcnow
from control_plane.db.lookup import get_by_id
from control_plane.errors import NotFound
from control_plane.schemas import After, Limit, PageOut
from control_plane.servers.models import Server
from control_plane.tenants.service import get_tenant

channel_router = APIRouter(prefix="/api/v1/alert-channels", tags=["alerts"])
policy_router = APIRouter(prefix="/api/v1/escalation-policies", tags=["alerts"])
server_policy_router = APIRouter(
    prefix="/api/v1/servers/{server_id}/escalation-policy", tags=["alerts"]
)
notification_router = APIRouter(prefix="/api/v1/notifications", tags=["alerts"])
relay_router = APIRouter(prefix="/api/v1/alert-relay", tags=["alerts"])
ROUTERS = (channel_router, policy_router, server_policy_router, notification_router, relay_router)


async def _owner(
    session: AsyncSession, ctx: RequestContext, requested: uuid.UUID | None
) -> uuid.UUID | None:
    """Tenant keys own what they make; an admin names a tenant, or none for the fleet."""
    own = ctx.principal.tenant_id
    if own is not None:
        if requested is not None and requested != own:
            raise NotFound("tenant", requested, field="body.tenant_id")
        return own
    if requested is not None:
        await get_tenant(session, requested, field="body.tenant_id")
    return requested


# Channels


@channel_router.post("", status_code=status.HTTP_201_CREATED)
async def create_channel(body: ChannelCreate, ctx: Ctx) -> ChannelOut:
    """Secrets (URL, webhook secret, routing key) go to Vault and are never shown again."""
    async with ctx.session() as session:
        owner = await _owner(session, ctx, body.tenant_id)
        channel = await channels.create_channel(session, ctx.vault, ctx.settings, owner, body)
        return channels.channel_out(channel)


@channel_router.get("")
async def list_channels(ctx: Ctx, tenant_id: uuid.UUID | None = None) -> list[ChannelOut]:
    async with ctx.session() as session:
        return [channels.channel_out(c) for c in await channels.list_channels(session, tenant_id)]


@channel_router.get("/{channel_id}")
async def get_channel(channel_id: uuid.UUID, ctx: Ctx) -> ChannelOut:
    async with ctx.session() as session:
        return channels.channel_out(await channels.get_channel(session, channel_id))


@channel_router.patch("/{channel_id}")
async def update_channel(channel_id: uuid.UUID, body: ChannelUpdate, ctx: Ctx) -> ChannelOut:
    async with ctx.session() as session:
        channel = await channels.get_channel(session, channel_id)
        channel = await channels.update_channel(session, ctx.vault, ctx.settings, channel, body)
        return channels.channel_out(channel)


@channel_router.delete("/{channel_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_channel(channel_id: uuid.UUID, ctx: Ctx) -> None:
    """409 while an escalation policy notifies it."""
    async with ctx.session() as session:
        await channels.delete_channel(
            session, ctx.vault, await channels.get_channel(session, channel_id)
        )


@channel_router.post("/{channel_id}/test")
async def test_channel(channel_id: uuid.UUID, ctx: Ctx) -> DeliveryOut:
    """Send a ``test`` message now (quiet hours do not apply) and return how it went; a
    failure is retried like any delivery and shown in the notification's log."""
    actor = ctx.principal.key_name or None
    return await send_test(ctx.session, ctx.db, ctx.vault, ctx.settings, channel_id, actor)


# Escalation policies


@policy_router.post("", status_code=status.HTTP_201_CREATED)
async def create_policy(body: PolicyCreate, ctx: Ctx) -> PolicyOut:
    """A tenant's first policy is its default; channels must be the same tenant's."""
    async with ctx.session() as session:
        owner = await _owner(session, ctx, body.tenant_id)
        return policies.policy_out(await policies.create_policy(session, owner, body))


@policy_router.get("")
async def list_policies(ctx: Ctx, tenant_id: uuid.UUID | None = None) -> list[PolicyOut]:
    async with ctx.session() as session:
        return [policies.policy_out(p) for p in await policies.list_policies(session, tenant_id)]


@policy_router.get("/{policy_id}")
async def get_policy(policy_id: uuid.UUID, ctx: Ctx) -> PolicyOut:
    async with ctx.session() as session:
        return policies.policy_out(await policies.get_policy(session, policy_id))


@policy_router.patch("/{policy_id}")
async def update_policy(policy_id: uuid.UUID, body: PolicyUpdate, ctx: Ctx) -> PolicyOut:
    async with ctx.session() as session:
        policy = await policies.get_policy(session, policy_id)
        return policies.policy_out(await policies.update_policy(session, policy, body))


@policy_router.delete("/{policy_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_policy(policy_id: uuid.UUID, ctx: Ctx) -> None:
    async with ctx.session() as session:
        await policies.delete_policy(session, await policies.get_policy(session, policy_id))


async def _assignment(session: AsyncSession, server: Server) -> AssignmentOut:
    effective = await effective_policy(session, server.tenant_id, None, server.id)
    return AssignmentOut(
        escalation_policy_id=server.escalation_policy_id,
        effective=policies.policy_out(effective) if effective else None,
    )


@server_policy_router.get("")
async def get_server_policy(server_id: uuid.UUID, ctx: Ctx) -> AssignmentOut:
    """The server's own policy (if any) and the one that applies after fallbacks."""
    async with ctx.session() as session:
        return await _assignment(session, await get_by_id(session, Server, server_id, "server"))


@server_policy_router.put("")
async def put_server_policy(server_id: uuid.UUID, body: AssignPolicy, ctx: Ctx) -> AssignmentOut:
    async with ctx.session() as session:
        server = await get_by_id(session, Server, server_id, "server")
        server.escalation_policy_id = await policies.assignable(
            session, server.tenant_id, body.escalation_policy_id, "body.escalation_policy_id"
        )
        await session.flush()
        return await _assignment(session, server)


# Notifications


@notification_router.get("")
async def list_notifications(
    ctx: Ctx,
    in_app: bool = True,
    unread: bool = False,
    tenant_id: uuid.UUID | None = None,
    after: After = None,
    limit: Limit = 100,
) -> PageOut[NotificationOut]:
    """The in-app feed (``in_app=false``: every notification, with its delivery log at
    ``GET …/{id}``). Admin keys see the fleet's own (notices about failed deliveries), or a
    tenant's with ``tenant_id``."""
    async with ctx.session() as session:
        page = await feed.list_notifications(
            session,
            fleet=ctx.principal.is_admin,
            tenant_id=tenant_id,
            in_app=in_app,
            unread=unread,
            after=after,
            limit=limit,
        )
        items = [feed.notification_out(row) for row in page.items]
        return PageOut(items=items, next_after=page.next_after)


@notification_router.post("/read")
async def mark_read(body: MarkRead, ctx: Ctx, tenant_id: uuid.UUID | None = None) -> ReadOut:
    """Mark these notifications read, or (``all``) the whole feed."""
    async with ctx.session() as session:
        count = await feed.mark_read(
            session,
            ids=None if body.all else body.ids,
            fleet=ctx.principal.is_admin,
            tenant_id=tenant_id,
            now=utcnow(),
        )
    return ReadOut(marked=count)


@notification_router.get("/{notification_id}")
async def get_notification(notification_id: uuid.UUID, ctx: Ctx) -> NotificationDetail:
    """The notification and its delivery log: every channel, every attempt."""
    async with ctx.session() as session:
        row = await feed.get_notification(session, notification_id)
        return await feed.notification_detail(session, row)


@notification_router.post("/{notification_id}/read")
async def read_notification(notification_id: uuid.UUID, ctx: Ctx) -> NotificationOut:
    async with ctx.session() as session:
        row = await feed.get_notification(session, notification_id)
        return feed.notification_out(await feed.read_one(session, row, utcnow()))


# The SMTP relay (admin)


@relay_router.get("")
async def get_relay(ctx: AdminCtx) -> RelayOut:
    """The relay alert email goes through (MAILFLEET_SMTP_RELAY_*), without its password."""
    settings = ctx.settings
    return RelayOut(
        host=settings.smtp_relay_host,
        port=settings.smtp_relay_port,
        security=settings.smtp_relay_security,
        username=settings.smtp_relay_username,
        from_address=settings.smtp_relay_from,
        has_password=await delivery.relay_password(ctx.vault) is not None,
    )


@relay_router.put("/password", status_code=status.HTTP_204_NO_CONTENT)
async def put_relay_password(body: RelayPassword, ctx: AdminCtx) -> None:
    """Stored in Vault only (never an environment variable), never shown again."""
    await ctx.vault.put(delivery.RELAY_SECRET, {"password": body.password})


@relay_router.delete("/password", status_code=status.HTTP_204_NO_CONTENT)
async def delete_relay_password(ctx: AdminCtx) -> None:
    await ctx.vault.delete(delivery.RELAY_SECRET)
