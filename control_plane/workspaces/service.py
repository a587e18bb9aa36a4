"""Workspaces belong to one tenant; names are unique within it."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.alerts.policies import assignable
from control_plane.db.lookup import get_by_id
from control_plane.db.pagination import Page, paginate
from control_plane.db.writes import flush_unique
from control_plane.tenants.service import get_tenant
from control_plane.workspaces.models import Workspace
from control_plane.workspaces.schemas import WorkspaceCreate, WorkspaceUpdate


def _duplicate(name: str | None) -> str:
    return f"this tenant already has a workspace named {name!r}"


async def create_workspace(
    session: AsyncSession, tenant_id: uuid.UUID, data: WorkspaceCreate
) -> Workspace:
    await get_tenant(session, tenant_id, field="body.tenant_id")
    workspace = Workspace(tenant_id=tenant_id, name=data.name, description=data.description)
    session.add(workspace)
    await flush_unique(session, "body.name", _duplicate(data.name))
    await session.refresh(workspace)
    return workspace


async def get_workspace(session: AsyncSession, workspace_id: uuid.UUID) -> Workspace:
    return await get_by_id(session, Workspace, workspace_id, "workspace")


async def list_workspaces(
    session: AsyncSession, tenant_id: uuid.UUID | None, after: uuid.UUID | None, limit: int
) -> Page[Workspace]:
    stmt = select(Workspace)
    if tenant_id is not None:
        stmt = stmt.where(Workspace.tenant_id == tenant_id)
    return await paginate(session, stmt, Workspace.id, after, limit)


async def update_workspace(
    session: AsyncSession, workspace_id: uuid.UUID, data: WorkspaceUpdate
) -> Workspace:
    workspace = await get_workspace(session, workspace_id)
    if "escalation_policy_id" in data.model_fields_set:  # null is a value here: the default
        workspace.escalation_policy_id = await assignable(
            session, workspace.tenant_id, data.escalation_policy_id, "body.escalation_policy_id"
        )
    for markup in ("markup_percent", "markup_fixed"):  # null is a value: no markup
        if markup in data.model_fields_set:
            setattr(workspace, markup, getattr(data, markup))
    for field, value in data.model_dump(
        exclude_unset=True,
        exclude_none=True,
        exclude={"escalation_policy_id", "markup_percent", "markup_fixed"},
    ).items():
        setattr(workspace, field, value)
    await flush_unique(session, "body.name", _duplicate(data.name))
    await session.refresh(workspace)
    return workspace


async def delete_workspace(session: AsyncSession, workspace_id: uuid.UUID) -> None:
    await session.delete(await get_workspace(session, workspace_id))
    await session.flush()
