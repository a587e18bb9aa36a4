from __future__ import annotations

import uuid

from fastapi import APIRouter, status

from control_plane.api.context import Ctx
from control_plane.schemas import After, Limit, PageOut
from control_plane.workspaces import service
from control_plane.workspaces.schemas import WorkspaceCreate, WorkspaceOut, WorkspaceUpdate

router = APIRouter(prefix="/api/v1/workspaces", tags=["workspaces"])


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_workspace(body: WorkspaceCreate, ctx: Ctx) -> WorkspaceOut:
    tenant_id = ctx.owning_tenant(body.tenant_id)
    async with ctx.session() as session:
        workspace = await service.create_workspace(session, tenant_id, body)
        return WorkspaceOut.model_validate(workspace)


@router.get("")
async def list_workspaces(
    ctx: Ctx,
    tenant_id: uuid.UUID | None = None,
    after: After = None,
    limit: Limit = 100,
) -> PageOut[WorkspaceOut]:
    async with ctx.session() as session:
        page = await service.list_workspaces(session, tenant_id, after, limit)
        items = [WorkspaceOut.model_validate(w) for w in page.items]
        return PageOut(items=items, next_after=page.next_after)


@router.get("/{workspace_id}")
async def get_workspace(workspace_id: uuid.UUID, ctx: Ctx) -> WorkspaceOut:
    async with ctx.session() as session:
        return WorkspaceOut.model_validate(await service.get_workspace(session, workspace_id))


@router.patch("/{workspace_id}")
async def update_workspace(
    workspace_id: uuid.UUID, body: WorkspaceUpdate, ctx: Ctx
) -> WorkspaceOut:
    async with ctx.session() as session:
        workspace = await service.update_workspace(session, workspace_id, body)
        return WorkspaceOut.model_validate(workspace)


@router.delete("/{workspace_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_workspace(workspace_id: uuid.UUID, ctx: Ctx) -> None:
    async with ctx.session() as session:
        await service.delete_workspace(session, workspace_id)
