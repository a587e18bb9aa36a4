from __future__ import annotations

import uuid

from fastapi import APIRouter, status

from control_plane.api.context import Ctx, RequestContext
from control_plane.api_keys import service
from control_plane.api_keys.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyOut
from control_plane.errors import Forbidden
from control_plane.schemas import After, Limit, PageOut

router = APIRouter(prefix="/api/v1/api-keys", tags=["api-keys"])


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_api_key(body: ApiKeyCreate, ctx: Ctx) -> ApiKeyCreated:
    """Admin keys make admin or tenant keys; tenant keys make keys for their own tenant."""
    return await issue_for(ctx, body)


async def issue_for(ctx: RequestContext, body: ApiKeyCreate) -> ApiKeyCreated:
    """A new key as the caller may make it (the API's and the console's): the key itself
    is in the answer only."""
    if body.scope == "admin" and not ctx.principal.is_admin:
        raise Forbidden("only an admin key can create admin keys")
    tenant_id = ctx.owning_tenant(body.tenant_id) if body.scope == "tenant" else body.tenant_id
    async with ctx.session() as session:
        issued = await service.issue_key(
            session,
            scope=body.scope,
            tenant_id=tenant_id,
            name=body.name,
            created_by=ctx.principal.key_id,
            expires_at=body.expires_at,
        )
        out = ApiKeyOut.model_validate(issued.record)
    return ApiKeyCreated(**out.model_dump(), key=issued.key)


@router.get("")
async def list_api_keys(
    ctx: Ctx,
    tenant_id: uuid.UUID | None = None,
    include_revoked: bool = False,
    after: After = None,
    limit: Limit = 100,
) -> PageOut[ApiKeyOut]:
    async with ctx.session() as session:
        page = await service.list_keys(session, tenant_id, include_revoked, after, limit)
        items = [ApiKeyOut.model_validate(k) for k in page.items]
        return PageOut(items=items, next_after=page.next_after)


@router.get("/{api_key_id}")
async def get_api_key(api_key_id: uuid.UUID, ctx: Ctx) -> ApiKeyOut:
    async with ctx.session() as session:
        return ApiKeyOut.model_validate(await service.get_key(session, api_key_id))


@router.delete("/{api_key_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_api_key(api_key_id: uuid.UUID, ctx: Ctx) -> None:
    """Revokes the key at once; it is kept (revoked) for the audit trail."""
    async with ctx.session() as session:
        await service.revoke_key(session, api_key_id)
