"""The backup schedule, run by the periodic jobs: due backups, forgets and checks become
agent commands (one at a time per repository), and finished ones are absorbed."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import exists, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.backups import service
from control_plane.backups.models import BackupPolicy
from control_plane.commands.models import Command
from control_plane.db.base import utcnow
from control_plane.servers.models import Server


async def absorb_finished(session: AsyncSession) -> int:
    """Fold every newly finished ``backup.*`` command into its policy."""
    unseen = exists().where(
        Command.server_id == BackupPolicy.server_id,
        Command.kind.in_(service.KINDS),
        Command.state.in_(service.FINAL),
        or_(
            BackupPolicy.results_seen_at.is_(None),
            Command.finished_at > BackupPolicy.results_seen_at,
        ),
    )
    policies = (
        await session.scalars(select(BackupPolicy).where(unseen).with_for_update(skip_locked=True))
    ).all()
    return sum([await service.absorb_results(session, policy) for policy in policies])


async def queue_due(session: AsyncSession) -> int:
    """Queue what is due: a backup first, then forget+prune, a restore drill, a check of the
    next ``1/n`` of the data. A server whose repository is busy waits for the next round."""
    now = utcnow()
    due = (
        await session.scalars(
            select(BackupPolicy)
            .where(
                BackupPolicy.enabled.is_(True),
                or_(
                    BackupPolicy.next_backup_at <= now,
                    BackupPolicy.next_forget_at <= now,
                    BackupPolicy.next_check_at <= now,
                    BackupPolicy.next_drill_at <= now,
                ),
            )
            .with_for_update(skip_locked=True)
        )
    ).all()
    queued = 0
    for policy in due:
        server = await session.get(Server, policy.server_id)
        if server is None or server.state != "ready" or await service.busy(session, server):
            continue
        if policy.next_backup_at is not None and policy.next_backup_at <= now:
            await service.queue(session, server, policy, "backup.run")
            policy.next_backup_at = now + timedelta(seconds=policy.interval_seconds)
        elif policy.next_forget_at is not None and policy.next_forget_at <= now:
            keep = service.retention(policy)
            await service.queue(session, server, policy, "backup.forget", keep=keep)
            policy.next_forget_at = now + timedelta(seconds=policy.forget_interval_seconds)
        elif policy.next_drill_at is not None and policy.next_drill_at <= now:
            await service.queue(session, server, policy, "backup.drill", sample=policy.drill_sample)
            policy.next_drill_at = now + timedelta(seconds=policy.drill_interval_seconds)
        else:
            subset = f"{policy.check_next_subset}/{policy.check_subsets}"
            await service.queue(session, server, policy, "backup.check", read_data_subset=subset)
            policy.check_next_subset = policy.check_next_subset % policy.check_subsets + 1
            policy.next_check_at = now + timedelta(seconds=policy.check_interval_seconds)
        queued += 1
    await session.flush()
    return queued
