"""Tenant lifecycle. Admin sessions see every tenant; tenant sessions only their own."""

from __future__ import annotations

import uuid
from collections.abc import Collection

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.api_keys.cache import keys as trusted_keys
from control_plane.db.lookup import get_by_id
from control_plane.db.pagination import Page, paginate
from control_plane.db.writes import flush_unique
from control_plane.tenants.models import Tenant
from control_plane.tenants.schemas import TenantCreate, TenantUpdate
from control_plane.vault.client import Vault, secret_path


async def create_tenant(session: AsyncSession, data: TenantCreate) -> Tenant:
    tenant = Tenant(name=data.name)
    session.add(tenant)
    await flush_unique(session, "body.name", f"a tenant named {data.name!r} already exists")
    return tenant


async def get_tenant(
    session: AsyncSession, tenant_id: uuid.UUID, *, field: str | None = None
) -> Tenant:
    return await get_by_id(session, Tenant, tenant_id, "tenant", field=field)


async def list_tenants(session: AsyncSession, after: uuid.UUID | None, limit: int) -> Page[Tenant]:
    return await paginate(session, select(Tenant), Tenant.id, after, limit)


async def tenant_names(
    session: AsyncSession, tenant_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, str]:
    """Names of many tenants at once (an admin's page of the fleet names each owner)."""
    rows = await session.execute(select(Tenant.id, Tenant.name).where(Tenant.id.in_(tenant_ids)))
    return {tenant_id: name for tenant_id, name in rows}


async def update_tenant(session: AsyncSession, tenant_id: uuid.UUID, data: TenantUpdate) -> Tenant:
    tenant = await get_tenant(session, tenant_id)
    if data.name is not None:
        tenant.name = data.name
    if data.cost_split is not None:
        tenant.cost_split = data.cost_split
    await flush_unique(session, "body.name", f"a tenant named {data.name!r} already exists")
    await session.refresh(tenant)
    return tenant


async def delete_tenant(session: AsyncSession, tenant_id: uuid.UUID) -> None:
    """Delete a tenant and, by cascade, everything it owns, its API keys included (which
    this replica stops trusting at once; others within ``api_key_cache_seconds``)."""
    tenant = await get_tenant(session, tenant_id)
    await session.delete(tenant)
    await session.flush()
    trusted_keys.forget_tenant(tenant_id)


# Vault prefixes whose next segment is a tenant id: what a tenant's secrets live under.
TENANT_SECRET_ROOTS = ("vps", "workspace", "smtp", "dns", "alerts")


async def forget_secrets(vault: Vault, tenant_id: uuid.UUID) -> int:
    """Destroy a deleted tenant's secrets (servers, workspaces, mailboxes, DNS providers,
    alert channels); how many. Called after the rows are gone, so nothing still needs them."""
    destroyed = 0
    for root in TENANT_SECRET_ROOTS:
        destroyed += await vault.delete_tree(secret_path(root, tenant_id))
    return destroyed
