"""A workspace's backup policy: what every server of the workspace gets unless it has its
own. Each server keeps a repository of its own (``{server_id}`` in the URLs), so one
server's backup never waits for another's; the repository password and credentials are the
workspace's (Vault ``workspace/<tenant>/<workspace>/backup``), copied to each server's."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.backups import service
from control_plane.backups.models import BackupPolicy, WorkspaceBackupPolicy
from control_plane.backups.schemas import SECRET_FIELDS, PolicyIn
from control_plane.errors import InvalidInput, NotFound
from control_plane.servers.models import Server
from control_plane.vault.client import Vault, secret_path
from control_plane.workspaces.models import Workspace

PLACEHOLDER = "{server_id}"


def _secret_path(workspace_id: Any, tenant_id: Any) -> str:
    return secret_path("workspace", tenant_id, workspace_id, "backup")


async def get(session: AsyncSession, workspace: Workspace) -> WorkspaceBackupPolicy:
    found = await session.scalar(
        select(WorkspaceBackupPolicy).where(WorkspaceBackupPolicy.workspace_id == workspace.id)
    )
    if found is None:
        raise NotFound("backup policy of workspace", workspace.id)
    return found


async def put(
    session: AsyncSession, vault: Vault, workspace: Workspace, data: PolicyIn
) -> WorkspaceBackupPolicy:
    """Set the workspace's policy and bring the servers that inherit it up to date."""
    for field, url in (("body.repository_url", data.repository_url),
                       ("body.offsite_url", data.offsite_url)):  # fmt: skip
        if url is not None and PLACEHOLDER not in url:
            raise InvalidInput(
                f"each server needs a repository of its own: put {PLACEHOLDER} in the URL",
                field=field,
            )
    path = _secret_path(workspace.id, workspace.tenant_id)
    stored: dict[str, Any] = dict(await vault.get(path) or {})
    secret = {**service.stored_urls(data, stored), **service.merged_secret(data, stored)}
    await vault.put(path, secret)
    row = await session.scalar(
        select(WorkspaceBackupPolicy).where(WorkspaceBackupPolicy.workspace_id == workspace.id)
    )
    if row is None:
        row = WorkspaceBackupPolicy(tenant_id=workspace.tenant_id, workspace_id=workspace.id)
        session.add(row)
    template = data.model_dump(mode="json", exclude=SECRET_FIELDS)
    for key in ("repository_url", "offsite_url"):
        template[key] = service.masked_url(template[key])  # the password is in Vault
    row.template = json.dumps(template)
    await session.flush()
    inheriting = (
        await session.scalars(
            select(Server)
            .join(BackupPolicy, BackupPolicy.server_id == Server.id)
            .where(Server.workspace_id == workspace.id, BackupPolicy.inherited.is_(True))
        )
    ).all()
    for server in inheriting:
        await apply_to(session, vault, server, row, secret)
    return row


async def credential_names(vault: Vault, row: WorkspaceBackupPolicy) -> list[str]:
    secret = await vault.get(_secret_path(row.workspace_id, row.tenant_id))
    return service.credential_names(dict(secret or {}))


async def delete(session: AsyncSession, vault: Vault, workspace: Workspace) -> None:
    """New servers no longer get a policy; the servers that have one keep it (backups never
    stop silently)."""
    await session.delete(await get(session, workspace))
    await session.flush()
    await vault.delete(_secret_path(workspace.id, workspace.tenant_id))


async def apply_to(
    session: AsyncSession,
    vault: Vault,
    server: Server,
    row: WorkspaceBackupPolicy,
    secret: dict[str, Any] | None = None,
) -> BackupPolicy:
    """The workspace's policy as the server's own (marked inherited)."""
    if secret is None:
        secret = dict(await vault.get(_secret_path(row.workspace_id, row.tenant_id)) or {})
    template = json.loads(row.template)
    for key in ("repository_url", "offsite_url"):
        if template.get(key):
            full = secret.get(key) or template[key]  # the template's URLs are masked
            template[key] = full.replace(PLACEHOLDER, str(server.id))
    body = PolicyIn(
        **template,
        repository_password=secret.get("password"),
        offsite_password=secret.get("offsite_password"),
        repository_env=secret.get("env") or {},
        offsite_env=secret.get("offsite_env") or {},
    )
    policy = await service.put_policy(session, vault, server, body)
    policy.inherited = True
    await session.flush()
    return policy


def adopt_job(vault: Vault) -> Any:
    """A periodic job: ready servers of a workspace with a policy, and none of their own,
    get the workspace's."""

    async def run(session: AsyncSession) -> int:
        template = WorkspaceBackupPolicy
        rows = (
            await session.execute(
                select(Server, template)
                .join(
                    WorkspaceBackupPolicy, WorkspaceBackupPolicy.workspace_id == Server.workspace_id
                )
                .outerjoin(BackupPolicy, BackupPolicy.server_id == Server.id)
                .where(BackupPolicy.id.is_(None), Server.state == "ready")
                .with_for_update(of=Server, skip_locked=True)
            )
        ).all()
        for server, row in rows:
            await apply_to(session, vault, server, row)
        return len(rows)

    return run
