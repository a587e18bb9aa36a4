"""Disaster recovery: rebuild a lost (or doomed) server on a new VPS from its backups.

An adopted server (provider ``ssh``) is rebuilt on a machine the customer has — another one,
or its own once reinstalled (``ssh_adopt.address_free``): the request names its ``address``
and an SSH credential, and the new server is adopted there (the agent installed over SSH)
before the same restore follows.

``start`` orders the new server with the old one's settings and takes over everything that
is not on the VPS: the backup repository (policy, snapshots and their secrets in Vault), the
MailU secrets, the DKIM selector and the mail domains (DNS follows the domains' server). The
periodic job then walks the recovery: once the new server is ready, restore the chosen
snapshot in place, keep it, re-render MailU for the new address, retire the old server; the
time from the request to that point is the recovery's RTO.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.backups import service
from control_plane.backups.models import BackupPolicy, BackupSnapshot, ServerRecovery
from control_plane.backups.schemas import RecoverIn, RestoreIn
from control_plane.commands.models import Command
from control_plane.db.base import utcnow
from control_plane.errors import Conflict, InvalidInput, NotFound
from control_plane.mail import stack
from control_plane.mail.models import MailDomain
from control_plane.provisioning import events, ssh_adopt
from control_plane.provisioning.registry import ADOPTED, ProviderRegistry
from control_plane.provisioning.service import deprovision, order_server
from control_plane.servers.models import Server
from control_plane.servers.schemas import ServerCreate
from control_plane.settings import Settings
from control_plane.vault.client import Vault

ACTIVE = ("provisioning", "restoring", "finishing", "reconfiguring", "retiring")
_POLICY_FIELDS = (
    "repository_url", "offsite_url", "env_names", "paths", "interval_seconds", "keep_hourly",
    "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly", "forget_interval_seconds",
    "check_interval_seconds", "check_subsets", "check_next_subset", "limit_upload_kib",
    "drill_interval_seconds", "drill_sample",
)  # fmt: skip
_SNAPSHOT_FIELDS = ("short_id", "taken_at", "root", "paths", "data_added", "bytes_processed",
                    "files", "duration_seconds", "offsite_copied")  # fmt: skip


async def start(
    session: AsyncSession,
    vault: Vault,
    providers: ProviderRegistry,
    settings: Settings,
    old: Server,
    data: RecoverIn,
) -> ServerRecovery:
    now = utcnow()
    order = _order(old, data, now)  # the body's fields first, then what it asks for
    policy = await service.require_policy(session, old)
    await service.absorb_results(session, policy)
    snapshot = await service.snapshot_for(
        session, old, RestoreIn(at=data.at, snapshot=data.snapshot)
    )
    running = await session.scalar(
        select(ServerRecovery.id).where(
            ServerRecovery.old_server_id == old.id, ServerRecovery.state.in_(ACTIVE)
        )
    )
    if running is not None:
        raise Conflict(f"server {old.id} is already being recovered ({running})")
    new = await order_server(session, providers, settings, old.tenant_id, order, replacing=old)
    new.dkim_selector = old.dkim_selector
    for path in (service.secrets_path, stack.mailu_secrets_path):
        secret = await vault.get(path(old))
        if secret is not None:
            await vault.put(path(new), dict(secret))
    copy = BackupPolicy(tenant_id=new.tenant_id, server_id=new.id, enabled=False)
    for name in _POLICY_FIELDS:
        setattr(copy, name, getattr(policy, name))
    copy.results_seen_at = now
    session.add(copy)
    for row in await service.list_snapshots(session, old):
        fields = {name: getattr(row, name) for name in _SNAPSHOT_FIELDS}
        session.add(BackupSnapshot(tenant_id=new.tenant_id, server_id=new.id, **fields))
    await session.execute(
        update(MailDomain).where(MailDomain.server_id == old.id).values(server_id=new.id)
    )
    recovery = ServerRecovery(
        tenant_id=old.tenant_id, old_server_id=old.id, new_server_id=new.id,
        snapshot_short_id=snapshot.short_id, state="provisioning", started_at=now,
    )  # fmt: skip
    session.add(recovery)
    message = f"recovery onto {new.name} from snapshot {snapshot.short_id} started"
    events.record(session, old, "recovery", message)
    await session.flush()
    return recovery


def _order(old: Server, data: RecoverIn, now: datetime) -> ServerCreate:
    """The new server's order: the old one's settings, on its provider. An adopted server's
    machine is the customer's, so the new one is another machine of theirs, adopted over SSH
    at the ``address`` given (its region and plan stay refused there, as for any adoption);
    other providers rent the new VPS and take no address or SSH credential."""
    adopted = old.provider == ADOPTED
    if adopted and data.address is None:
        raise InvalidInput(
            "address is required to recover an adopted server: give the IPv4 address of "
            "another machine of yours to recover onto, with ssh_private_key or ssh_password "
            "for its root (MailFleet installs the agent there over SSH and restores)",
            field="body.address",
        )
    if not adopted:
        credential = (data.ssh_private_key, data.ssh_password)
        purpose = "recovering an adopted server"
        ssh_adopt.refuse_fields(old.provider, data.address, *credential, purpose=purpose)
    return ServerCreate(
        name=f"{old.name[:180]}-r{now:%Y%m%d%H%M%S}", provider=old.provider,
        region=data.region if adopted else data.region or old.region,
        plan=data.plan if adopted else data.plan or old.plan,
        address=data.address, ssh_private_key=data.ssh_private_key,
        ssh_password=data.ssh_password, mail_stack=old.mail_stack,
        mail_hostname=old.mail_hostname, workspace_id=old.workspace_id,
    )  # fmt: skip


async def for_server(session: AsyncSession, server_id: uuid.UUID) -> ServerRecovery:
    """The newest recovery a server is part of (as the old or the new one)."""
    found = await session.scalar(
        select(ServerRecovery)
        .where(
            (ServerRecovery.old_server_id == server_id)
            | (ServerRecovery.new_server_id == server_id)
        )
        .order_by(ServerRecovery.started_at.desc())
        .limit(1)
    )
    if found is None:
        raise NotFound("recovery of server", server_id)
    return found


def advance_job(vault: Vault, settings: Settings) -> Callable[[AsyncSession], Awaitable[int]]:
    async def run(session: AsyncSession) -> int:
        return await advance(session, vault, settings)

    return run


async def advance(session: AsyncSession, vault: Vault, settings: Settings) -> int:
    """Move every active recovery one step where its current step is done."""
    recoveries = (
        await session.scalars(
            select(ServerRecovery)
            .where(ServerRecovery.state.in_(ACTIVE))
            .with_for_update(skip_locked=True)
        )
    ).all()
    moved = 0
    for recovery in recoveries:
        before = recovery.state
        await _step(session, vault, settings, recovery)
        moved += recovery.state != before
    await session.flush()
    return moved


async def _step(
    session: AsyncSession, vault: Vault, settings: Settings, recovery: ServerRecovery
) -> None:
    new = await session.get(Server, recovery.new_server_id) if recovery.new_server_id else None
    if new is None:
        return _fail(recovery, "the new server is gone")
    if recovery.state == "provisioning":
        if new.state == "failed":
            return _fail(recovery, f"the new server failed in {new.failed_step}: "
                         f"{new.failure_reason}")  # fmt: skip
        if new.state == "ready":
            await _queue_restore(session, recovery, new)
        return None
    command = await session.get(Command, recovery.step_command_id)
    if command is None or command.state in service.LIVE:
        return None
    if command.state != "succeeded":
        return _fail(recovery, f"{command.kind} {command.state}: {command.error or ''}".strip())
    if recovery.state == "restoring":
        restore_id = json.loads(command.result or "{}").get("restore_id", "")
        policy = await service.require_policy(session, new)
        follow_up = await service.queue(
            session, new, policy, "backup.restore.finish", restore_id=restore_id, keep="restored"
        )
        recovery.state, recovery.step_command_id = "finishing", follow_up.id
    elif recovery.state == "finishing" and new.mail_stack == "mailu":
        # The restore kept the new server's rendered files (never a snapshot's); render
        # them again from the spec so they follow whatever the old server's settings were.
        install = await stack.queue_install(session, vault, new)
        recovery.state, recovery.step_command_id = "reconfiguring", install.id
    else:
        await _retire(session, settings, recovery, new)
    return None


async def _queue_restore(session: AsyncSession, recovery: ServerRecovery, new: Server) -> None:
    snapshot = await session.scalar(
        select(BackupSnapshot).where(
            BackupSnapshot.server_id == new.id,
            BackupSnapshot.short_id == recovery.snapshot_short_id,
        )
    )
    policy = await service.require_policy(session, new)
    if snapshot is None:
        return _fail(recovery, f"snapshot {recovery.snapshot_short_id} is no longer listed")
    command = await service.queue(
        session, new, policy, "backup.restore",
        snapshot=snapshot.short_id, target="in_place", snapshot_root=snapshot.root,
    )  # fmt: skip
    recovery.state, recovery.step_command_id = "restoring", command.id
    return None


async def _retire(
    session: AsyncSession, settings: Settings, recovery: ServerRecovery, new: Server
) -> None:
    """The new server serves: back it up from now on, and let the old one go."""
    old = await session.get(Server, recovery.old_server_id) if recovery.old_server_id else None
    if old is not None:
        await deprovision(session, old, settings)
    policy = await service.require_policy(session, new)
    policy.enabled, policy.next_backup_at = True, utcnow()
    now = utcnow()
    recovery.state, recovery.finished_at = "done", now
    recovery.rto_seconds = round((now - recovery.started_at).total_seconds(), 3)
    events.record(session, new, "recovery", f"recovered in {recovery.rto_seconds:.0f} s")


def _fail(recovery: ServerRecovery, reason: str) -> None:
    recovery.state, recovery.error, recovery.finished_at = "failed", reason, utcnow()
