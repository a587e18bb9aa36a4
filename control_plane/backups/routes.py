"""A server's backups: its policy, snapshots, runs and restores (tenant-scoped)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime

from fastapi import APIRouter, status
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.api.context import Ctx
from control_plane.backups import recovery, service, workspace
from control_plane.backups.models import (
    BackupPolicy,
    BackupSnapshot,
    ServerRecovery,
    WorkspaceBackupPolicy,
)
from control_plane.backups.schemas import (
    BackupsOut,
    PolicyIn,
    PolicyOut,
    RecoverIn,
    RecoveryOut,
    RestoreFinish,
    RestoreIn,
    Retention,
    SnapshotOut,
    WorkspacePolicyOut,
)
from control_plane.commands import handlers
from control_plane.commands.schemas import CommandOut
from control_plane.db.base import utcnow
from control_plane.db.lookup import get_by_id
from control_plane.servers.models import Server
from control_plane.vault.client import Vault
from control_plane.workspaces.service import get_workspace

router = APIRouter(prefix="/api/v1/servers/{server_id}", tags=["backups"])
workspace_router = APIRouter(
    prefix="/api/v1/workspaces/{workspace_id}/backup-policy", tags=["backups"]
)


def policy_out(policy: BackupPolicy) -> PolicyOut:
    return PolicyOut(
        id=policy.id,
        server_id=policy.server_id,
        repository_url=policy.repository_url,
        offsite_url=policy.offsite_url,
        env_names=policy.env_names.splitlines(),
        paths=policy.paths.splitlines(),
        enabled=policy.enabled,
        interval_seconds=policy.interval_seconds,
        retention=Retention(**service.retention(policy)),
        forget_interval_seconds=policy.forget_interval_seconds,
        check_interval_seconds=policy.check_interval_seconds,
        check_subsets=policy.check_subsets,
        drill_interval_seconds=policy.drill_interval_seconds,
        drill_sample=policy.drill_sample,
        limit_upload_kib=policy.limit_upload_kib,
        next_backup_at=policy.next_backup_at,
        last_success_at=policy.last_success_at,
        last_failure_at=policy.last_failure_at,
        last_error=policy.last_error,
        last_check_at=policy.last_check_at,
        last_check_error=policy.last_check_error,
        last_check_state=policy.last_check_state,
        last_drill_at=policy.last_drill_at,
        last_drill_error=policy.last_drill_error,
        last_drill_state=policy.last_drill_state,
    )


def snapshot_out(snapshot: BackupSnapshot) -> SnapshotOut:
    return SnapshotOut(
        short_id=snapshot.short_id,
        taken_at=snapshot.taken_at,
        age_seconds=(utcnow() - snapshot.taken_at).total_seconds(),
        data_added=snapshot.data_added,
        bytes_processed=snapshot.bytes_processed,
        files=snapshot.files,
        duration_seconds=snapshot.duration_seconds,
        offsite_copied=snapshot.offsite_copied,
    )


@router.get("/backup-policy")
async def get_policy(server_id: uuid.UUID, ctx: Ctx) -> PolicyOut:
    async with ctx.session() as session:
        server = await get_by_id(session, Server, server_id, "server")
        return policy_out(await service.require_policy(session, server))


@router.put("/backup-policy")
async def put_policy(server_id: uuid.UUID, body: PolicyIn, ctx: Ctx) -> PolicyOut:
    """Create or replace the policy. Credentials go to Vault and are never shown again; the
    repository password is generated unless one is given for an existing repository."""
    async with ctx.session() as session:
        server = await get_by_id(session, Server, server_id, "server")
        return policy_out(await service.put_policy(session, ctx.vault, server, body))


@router.delete("/backup-policy", status_code=status.HTTP_204_NO_CONTENT)
async def delete_policy(server_id: uuid.UUID, ctx: Ctx) -> None:
    """Stop backing up; the repository keeps its snapshots."""
    async with ctx.session() as session:
        server = await get_by_id(session, Server, server_id, "server")
        await service.delete_policy(session, server)


async def backups_out(
    session: AsyncSession,
    server: Server,
    before: datetime | None = None,
    limit: int | None = None,
) -> BackupsOut:
    """What the API, ``mailfleet backup list`` and the console show (results the agent sent
    are absorbed first); the console pages the snapshots (``before``, ``limit``)."""
    policy = await service.get_policy(session, server)
    if policy is not None:
        await service.absorb_results(session, policy)
    snapshots = await service.list_snapshots(session, server, before, limit)
    return BackupsOut(
        policy=policy_out(policy) if policy else None,
        findings=service.findings(policy, utcnow()),
        snapshots=[snapshot_out(s) for s in snapshots],
    )


@router.get("/backups")
async def list_backups(server_id: uuid.UUID, ctx: Ctx) -> BackupsOut:
    """Snapshots (newest first, with sizes and ages), the policy, and what is wrong."""
    async with ctx.session() as session:
        return await backups_out(session, await get_by_id(session, Server, server_id, "server"))


@router.post("/backups", status_code=status.HTTP_202_ACCEPTED)
async def run_backup(server_id: uuid.UUID, ctx: Ctx) -> CommandOut:
    """Back up now; follow the command for progress (409 while another backup job runs)."""
    async with ctx.session() as session:
        server = await get_by_id(session, Server, server_id, "server")
        out = CommandOut.of(await service.run_now(session, server))
    handlers.wake(server_id)
    return out


@router.post("/restore", status_code=status.HTTP_202_ACCEPTED)
async def restore(server_id: uuid.UUID, body: RestoreIn, ctx: Ctx) -> CommandOut:
    """Restore the state at a time (or a snapshot), in place or into a directory, the whole
    data or one mailbox. In place, the previous state is kept aside until
    ``POST …/restore/finish`` keeps the restored one or rolls back."""
    async with ctx.session() as session:
        server = await get_by_id(session, Server, server_id, "server")
        command, _ = await service.restore(session, server, body)
        out = CommandOut.of(command)
    handlers.wake(server_id)
    return out


@router.post("/restore/finish", status_code=status.HTTP_202_ACCEPTED)
async def finish_restore(server_id: uuid.UUID, body: RestoreFinish, ctx: Ctx) -> CommandOut:
    async with ctx.session() as session:
        server = await get_by_id(session, Server, server_id, "server")
        command = await service.finish_restore(session, server, body.restore_id, body.keep)
        out = CommandOut.of(command)
    handlers.wake(server_id)
    return out


def recovery_out(found: ServerRecovery) -> RecoveryOut:
    return RecoveryOut(
        id=found.id,
        old_server_id=found.old_server_id,
        new_server_id=found.new_server_id,
        snapshot=found.snapshot_short_id,
        state=found.state,
        started_at=found.started_at,
        finished_at=found.finished_at,
        rto_seconds=found.rto_seconds,
        error=found.error,
    )


@router.post("/recover", status_code=status.HTTP_202_ACCEPTED)
async def recover(server_id: uuid.UUID, body: RecoverIn, ctx: Ctx) -> RecoveryOut:
    """Rebuild the server on a new VPS from a snapshot (default: the newest): the new server
    takes over its repository, MailU secrets and domains; the old one is retired once the
    new one serves. Follow it with ``GET …/recovery`` (on either server)."""
    async with ctx.session() as session:
        server = await get_by_id(session, Server, server_id, "server")
        started = await recovery.start(
            session, ctx.vault, ctx.providers, ctx.settings, server, body
        )
        out = recovery_out(started)
    ctx.wake_workflow()
    return out


@router.get("/recovery")
async def get_recovery(server_id: uuid.UUID, ctx: Ctx) -> RecoveryOut:
    async with ctx.session() as session:
        server = await get_by_id(session, Server, server_id, "server")
        return recovery_out(await recovery.for_server(session, server.id))


async def workspace_policy_out(vault: Vault, row: WorkspaceBackupPolicy) -> WorkspacePolicyOut:
    return WorkspacePolicyOut(
        workspace_id=row.workspace_id,
        policy=json.loads(row.template),
        env_names=await workspace.credential_names(vault, row),
    )


@workspace_router.get("")
async def get_workspace_policy(workspace_id: uuid.UUID, ctx: Ctx) -> WorkspacePolicyOut:
    async with ctx.session() as session:
        found = await workspace.get(session, await get_workspace(session, workspace_id))
    return await workspace_policy_out(ctx.vault, found)


@workspace_router.put("")
async def put_workspace_policy(
    workspace_id: uuid.UUID, body: PolicyIn, ctx: Ctx
) -> WorkspacePolicyOut:
    """The policy the workspace's servers get unless they have their own (``{server_id}``
    in the repository URLs: one repository per server). Servers that inherited the previous
    one are brought up to date now; new servers get it once ready."""
    async with ctx.session() as session:
        row = await workspace.put(
            session, ctx.vault, await get_workspace(session, workspace_id), body
        )
    return await workspace_policy_out(ctx.vault, row)


@workspace_router.delete("", status_code=status.HTTP_204_NO_CONTENT)
async def delete_workspace_policy(workspace_id: uuid.UUID, ctx: Ctx) -> None:
    """New servers no longer get it; servers that have it keep backing up."""
    async with ctx.session() as session:
        await workspace.delete(session, ctx.vault, await get_workspace(session, workspace_id))
