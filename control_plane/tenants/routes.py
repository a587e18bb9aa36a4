from __future__ import annotations

import uuid

from fastapi import APIRouter, status

from control_plane.api.context import AdminCtx, Ctx
from control_plane.schemas import After, Limit, PageOut
from control_plane.tenants import service
from control_plane.tenants.schemas import TenantCreate, TenantOut, TenantUpdate

router = APIRouter(prefix="/api/v1/tenants", tags=["tenants"])


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_tenant(body: TenantCreate, ctx: AdminCtx) -> TenantOut:
    async with ctx.session() as session:
        tenant = await service.create_tenant(session, body)
        return TenantOut.model_validate(tenant)


@router.get("")
async def list_tenants(
    ctx: AdminCtx, after: After = None, limit: Limit = 100
) -> PageOut[TenantOut]:
    async with ctx.session() as session:
        page = await service.list_tenants(session, after, limit)
        return PageOut(
            items=[TenantOut.model_validate(t) for t in page.items], next_after=page.next_after
        )


@router.get("/{tenant_id}")
async def get_tenant(tenant_id: uuid.UUID, ctx: Ctx) -> TenantOut:
    """An admin key reads any tenant; a tenant key only its own."""
    async with ctx.session() as session:
        return TenantOut.model_validate(await service.get_tenant(session, tenant_id))


@router.patch("/{tenant_id}")
async def update_tenant(tenant_id: uuid.UUID, body: TenantUpdate, ctx: AdminCtx) -> TenantOut:
    async with ctx.session() as session:
        return TenantOut.model_validate(await service.update_tenant(session, tenant_id, body))


@router.delete("/{tenant_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_tenant(tenant_id: uuid.UUID, ctx: AdminCtx) -> None:
    """Deletes the tenant with its workspaces and keys, then its secrets in Vault."""
    async with ctx.session() as session:
        await service.delete_tenant(session, tenant_id)
    await service.forget_secrets(ctx.vault, tenant_id)
