"""Backup policies, the commands that carry them out, and what their results mean.

The agent's reports arrive as command results; ``absorb_results`` folds each finished
``backup.*`` command into the policy and the snapshot list exactly once (a cursor on the
policy, idempotent steps), from the periodic job or from a read that wants fresh data.
"""

from __future__ import annotations

import json
import secrets
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.backups.models import BackupPolicy, BackupSnapshot
from control_plane.backups.schemas import CheckState, PolicyIn, RestoreIn
from control_plane.commands import service as commands
from control_plane.commands.models import Command
from control_plane.costs import backup_storage
from control_plane.db.base import utcnow
from control_plane.errors import Conflict, InvalidInput, NotFound
from control_plane.provisioning import events
from control_plane.schemas import Finding
from control_plane.servers.models import Server
from control_plane.vault.client import Vault, server_secret_path
from mailfleet import restic

KINDS = ("backup.run", "backup.snapshots", "backup.restore", "backup.restore.finish",
         "backup.check", "backup.drill", "backup.forget")  # fmt: skip
LIVE = ("queued", "sent", "running")
FINAL = ("succeeded", "failed", "timed_out", "cancelled")
RUN_SECONDS = 6 * 3600.0
MAILU_MAIL = "/mailu/mail"  # where the agent keeps MailU's maildirs (agent/mailu/install.py)


URL_MASK = "***"


def secrets_path(server: Server) -> str:
    return server_secret_path(server.tenant_id, server.id, "backup")


def split_url_password(url: str) -> tuple[str, str | None]:
    """(the URL with its userinfo's password masked, that password, or None): restic's REST
    backend takes ``rest:https://user:password@host/``, and that password must reach neither
    the database nor an answer."""
    start = url.find("://") + 3
    if start < 3:
        return url, None
    end = min([i for i in (url.find(c, start) for c in "/?#") if i >= 0] or [len(url)])
    userinfo, at, host = url[start:end].rpartition("@")
    user, colon, password = userinfo.partition(":")
    if not at or not colon or not password:
        return url, None
    return f"{url[:start]}{user}:{URL_MASK}@{host}{url[end:]}", password


def masked_url(url: str | None) -> str | None:
    return None if url is None else split_url_password(url)[0]


def full_url(given: str | None, stored: str | None, field: str) -> str | None:
    """The URL to keep in Vault: as given, or the stored one a URL with its password masked
    stands for (a client PUTs back what it read)."""
    if given is None:
        return None
    masked, password = split_url_password(given)
    if password != URL_MASK:
        return given
    if stored is not None and masked_url(stored) == masked:
        return stored
    raise InvalidInput(
        f"the password is masked ({URL_MASK}) and none is stored for this URL: give it in full",
        field=field,
    )


def stored_urls(data: PolicyIn, stored: dict[str, Any]) -> dict[str, str]:
    """The request's repository URLs in full (passwords included), for Vault."""
    urls = {
        key: full_url(getattr(data, key), stored.get(key), f"body.{key}")
        for key in ("repository_url", "offsite_url")
    }
    return {key: url for key, url in urls.items() if url is not None}


def merged_secret(data: PolicyIn, stored: dict[str, Any]) -> dict[str, Any]:
    """Passwords and backend credentials after a PUT: what the request gives, else what is
    stored, else (passwords) new ones."""

    def password(given: str | None, name: str) -> str:
        return given or stored.get(name) or secrets.token_urlsafe(32)

    def env(given: dict[str, str] | None, name: str) -> dict[str, str]:
        return given if given is not None else dict(stored.get(name) or {})

    return {
        "password": password(data.repository_password, "password"),
        "env": env(data.repository_env, "env"),
        "offsite_password": password(data.offsite_password, "offsite_password"),
        "offsite_env": env(data.offsite_env, "offsite_env"),
    }


def credential_names(secret: dict[str, Any]) -> list[str]:
    """The names of the backend credentials a backup secret holds (never their values)."""
    return sorted({*(secret.get("env") or {}), *(secret.get("offsite_env") or {})})


async def get_policy(session: AsyncSession, server: Server) -> BackupPolicy | None:
    return await session.scalar(select(BackupPolicy).where(BackupPolicy.server_id == server.id))


async def require_policy(session: AsyncSession, server: Server) -> BackupPolicy:
    policy = await get_policy(session, server)
    if policy is None:
        raise NotFound("backup policy of server", server.id)
    return policy


async def put_policy(
    session: AsyncSession, vault: Vault, server: Server, data: PolicyIn
) -> BackupPolicy:
    """Create or replace the policy; secrets to Vault (a new version), the rest here."""
    policy = await get_policy(session, server)
    if policy is None:
        policy = BackupPolicy(tenant_id=server.tenant_id, server_id=server.id)
        session.add(policy)
    path = secrets_path(server)
    stored: dict[str, Any] = dict(await vault.get(path) or {})
    urls = stored_urls(data, stored)
    if (
        stored
        and stored.get("repository_url") != urls["repository_url"]
        and not (data.repository_password)
    ):
        # Another repository: a new one, with its own password.
        stored = {}
    stored = {**urls, **merged_secret(data, stored)}
    await vault.put(path, stored)
    retention = data.retention
    policy.repository_url = split_url_password(urls["repository_url"])[0]
    policy.offsite_url = masked_url(urls.get("offsite_url"))
    policy.env_names = "\n".join(credential_names(stored))
    policy.paths = "\n".join(data.paths)
    policy.enabled = data.enabled
    policy.interval_seconds = data.interval_seconds
    policy.keep_hourly, policy.keep_daily = retention.hourly, retention.daily
    policy.keep_weekly, policy.keep_monthly = retention.weekly, retention.monthly
    policy.keep_yearly = retention.yearly
    policy.forget_interval_seconds = data.forget_interval_seconds
    policy.check_interval_seconds = data.check_interval_seconds
    policy.check_subsets = data.check_subsets
    policy.check_next_subset = min(policy.check_next_subset or 1, data.check_subsets)
    policy.limit_upload_kib = data.limit_upload_kib
    policy.inherited = False  # the server's own, until the workspace's policy is applied
    policy.drill_interval_seconds, policy.drill_sample = (
        data.drill_interval_seconds,
        data.drill_sample,
    )
    now = utcnow()
    policy.next_backup_at = policy.next_backup_at or now
    policy.next_forget_at = policy.next_forget_at or now + timedelta(
        seconds=data.forget_interval_seconds
    )
    policy.next_check_at = policy.next_check_at or now + timedelta(
        seconds=data.check_interval_seconds
    )
    policy.next_drill_at = policy.next_drill_at or now + timedelta(
        seconds=data.drill_interval_seconds
    )
    await session.flush()
    return policy


async def delete_policy(session: AsyncSession, server: Server) -> None:
    """Stop backing up; the repository and its snapshots stay where they are."""
    await session.delete(await require_policy(session, server))
    await session.flush()


def payload(policy: BackupPolicy, server: Server, **extra: Any) -> dict[str, Any]:
    """A ``backup.*`` payload: repositories by URL, their secrets by Vault reference (a URL
    whose password is masked here is delivered in full from Vault, in place)."""
    fields = {"password": "repository_password", "env": "repository_env"}
    if split_url_password(policy.repository_url)[1] == URL_MASK:
        fields["repository_url"] = "repository.url"
    body: dict[str, Any] = {
        "repository": {"url": policy.repository_url},
        "host": str(server.id),
        **extra,
    }
    if policy.offsite_url:
        body["offsite"] = {"url": policy.offsite_url}
        fields |= {"offsite_password": "offsite_password", "offsite_env": "offsite_env"}
        if split_url_password(policy.offsite_url)[1] == URL_MASK:
            fields["offsite_url"] = "offsite.url"
    if policy.paths:
        body["paths"] = policy.paths.splitlines()
    if policy.limit_upload_kib:
        body["limit_upload_kib"] = policy.limit_upload_kib
    body["secrets_from"] = {"path": secrets_path(server), "fields": fields}
    return body


async def busy(session: AsyncSession, server: Server) -> Command | None:
    """The backup job running for this server's repository, if any: one at a time."""
    return await session.scalar(
        select(Command)
        .where(Command.server_id == server.id, Command.kind.in_(KINDS), Command.state.in_(LIVE))
        .limit(1)
    )


async def queue(
    session: AsyncSession, server: Server, policy: BackupPolicy, kind: str, **extra: Any
) -> Command:
    running = await busy(session, server)
    if running is not None:
        raise Conflict(f"{running.kind} ({running.id}) is still {running.state} for this server")
    command = await commands.queue_system_command(
        session, server, kind, payload(policy, server, **extra), RUN_SECONDS
    )
    events.record(session, server, "backup", f"{kind} queued")
    return command


async def run_now(session: AsyncSession, server: Server) -> Command:
    policy = await require_policy(session, server)
    return await queue(session, server, policy, "backup.run")


def retention(policy: BackupPolicy) -> dict[str, int]:
    return {
        "hourly": policy.keep_hourly,
        "daily": policy.keep_daily,
        "weekly": policy.keep_weekly,
        "monthly": policy.keep_monthly,
        "yearly": policy.keep_yearly,
    }


async def snapshot_for(session: AsyncSession, server: Server, data: RestoreIn) -> BackupSnapshot:
    """The snapshot a restore request means: by id, or the newest at or before ``at``."""
    stmt = select(BackupSnapshot).where(BackupSnapshot.server_id == server.id)
    if data.snapshot is not None:
        found = await session.scalar(stmt.where(BackupSnapshot.short_id == data.snapshot[:8]))
        if found is None:
            raise InvalidInput(f"no snapshot {data.snapshot} of this server", field="body.snapshot")
        return found
    if data.at is not None:
        stmt = stmt.where(BackupSnapshot.taken_at <= data.at)
    found = await session.scalar(stmt.order_by(BackupSnapshot.taken_at.desc()).limit(1))
    if found is None:
        when = f"at or before {data.at.isoformat()}" if data.at else "yet"
        raise InvalidInput(f"this server has no snapshot {when}", field="body.at")
    return found


async def restore(
    session: AsyncSession, server: Server, data: RestoreIn
) -> tuple[Command, BackupSnapshot]:
    policy = await require_policy(session, server)
    await absorb_results(session, policy)
    snapshot = await snapshot_for(session, server, data)
    include = []
    if data.mailbox is not None:
        address = data.mailbox.strip().lower()
        if "@" not in address or "/" in address:
            raise InvalidInput("an address local@domain", field="body.mailbox")
        include = [f"{snapshot.root.rstrip('/')}{MAILU_MAIL}/{address}"]
    command = await queue(
        session, server, policy, "backup.restore",
        snapshot=snapshot.short_id, target=data.target, include=include,
        snapshot_root=snapshot.root,
    )  # fmt: skip
    return command, snapshot


async def finish_restore(
    session: AsyncSession, server: Server, restore_id: str, keep: str
) -> Command:
    policy = await require_policy(session, server)
    return await queue(
        session, server, policy, "backup.restore.finish", restore_id=restore_id, keep=keep
    )


async def list_snapshots(
    session: AsyncSession,
    server: Server,
    before: datetime | None = None,
    limit: int | None = None,
) -> list[BackupSnapshot]:
    """Newest first; a page of them with ``limit``, those taken before ``before`` (the
    console's pages)."""
    stmt = select(BackupSnapshot).where(BackupSnapshot.server_id == server.id)
    if before is not None:
        stmt = stmt.where(BackupSnapshot.taken_at < before)
    stmt = stmt.order_by(BackupSnapshot.taken_at.desc()).limit(limit)
    return list((await session.scalars(stmt)).all())


async def latest_job(session: AsyncSession, server: Server) -> Command | None:
    """The server's newest ``backup.*`` command (running or finished), to follow or explain."""
    return await session.scalar(
        select(Command)
        .where(Command.server_id == server.id, Command.kind.in_(KINDS))
        .order_by(Command.created_at.desc())
        .limit(1)
    )


async def job(session: AsyncSession, server: Server, command_id: uuid.UUID) -> Command:
    """One of the server's ``backup.*`` commands (any other reads as missing)."""
    found = await commands.get_command(session, server.id, command_id)
    if found.kind not in KINDS:
        raise NotFound("backup job", command_id)
    return found


def findings(policy: BackupPolicy | None, now: datetime) -> list[Finding]:
    """What a health check should raise about this server's backups. A check or drill that
    could not run, and a new policy with no backup yet, are unknown: neither ok nor bad."""
    if policy is None or not policy.enabled:
        return [Finding(severity="warning", code="backup.none", message="no backups are taken")]
    found = []
    interval = timedelta(seconds=policy.interval_seconds)
    newest = policy.last_success_at
    if newest is None and now - policy.created_at <= 2 * interval:
        found.append(
            Finding(
                severity="warning",
                code="backup.stale",
                state="unknown",
                message="no backup has finished yet since the policy was set",
            )
        )
    elif newest is None or now - newest > 2 * interval:
        age = "never" if newest is None else f"{(now - newest).total_seconds() / 3600:.1f} h ago"
        found.append(
            Finding(
                severity="critical",
                code="backup.stale",
                message=f"the last good backup was {age}; the policy wants one every "
                f"{policy.interval_seconds // 60} min",
            )
        )
    failed = policy.last_failure_at and (newest is None or policy.last_failure_at > newest)
    if failed and policy.last_error:
        found.append(Finding(severity="critical", code="backup.failed", message=policy.last_error))
    for code, state, error, what in (
        ("backup.check_failed", policy.last_check_state, policy.last_check_error, "restic check"),
        ("backup.drill_failed", policy.last_drill_state, policy.last_drill_error,
         "the restore drill"),
    ):  # fmt: skip
        if state == "unknown":
            message = f"{what} could not run: {error}"
            found.append(Finding(severity="warning", code=code, message=message, state="unknown"))
        elif state == "failed":
            message = f"{what} failed: {error}"
            found.append(Finding(severity="critical", code=code, message=message))
    return found


def outcome(command: Command) -> tuple[CheckState, str | None]:
    """A settled check's or drill's state and error to keep. One that could not get at the
    repository (timed out, cancelled, no repository, locked, wrong password, …) is
    ``unknown``: it judged nothing."""
    if command.state == "succeeded":
        return "ok", None
    reason = command.error or command.state
    if command.state in ("timed_out", "cancelled") or any(
        words in reason for words in restic.NOT_REACHED
    ):
        return "unknown", reason
    return "failed", reason


async def absorb_results(session: AsyncSession, policy: BackupPolicy) -> int:
    """Fold finished ``backup.*`` commands into the policy and snapshots, each once.

    The policy row is locked (and re-read) before anything else is written: the periodic
    job and a request (listing, restore, recovery) may absorb the same policy at once, and
    each must see where the other stopped; taking the policy first in both keeps them from
    deadlocking over the rows absorbing writes (seen: a listing against the job, under load).
    """
    await session.refresh(policy, with_for_update=True)
    stmt = select(Command).where(
        Command.server_id == policy.server_id,
        Command.kind.in_(KINDS),
        Command.state.in_(FINAL),
    )
    if policy.results_seen_at is not None:
        stmt = stmt.where(Command.finished_at > policy.results_seen_at)
    done = list((await session.scalars(stmt.order_by(Command.finished_at))).all())
    server = await session.get(Server, policy.server_id)
    for command in done:
        result = json.loads(command.result) if command.result else {}
        ok = command.state == "succeeded"
        reason = command.error or command.state
        if command.kind in backup_storage.MEASURED and ok and server is not None:
            when = command.finished_at or utcnow()
            await backup_storage.record_backup(session, server, policy, result, when)
        if command.kind == "backup.run":
            await _absorb_backup(session, policy, command, result if ok else None, reason)
        elif command.kind == "backup.forget" and ok:
            await _absorb_forget(session, policy, result)
        elif command.kind == "backup.snapshots" and ok:
            await _absorb_listing(session, policy, result)
        elif command.kind == "backup.check":
            policy.last_check_at = command.finished_at
            policy.last_check_state, policy.last_check_error = outcome(command)
        elif command.kind == "backup.drill":
            policy.last_drill_at = command.finished_at
            policy.last_drill_state, policy.last_drill_error = outcome(command)
        if server is not None:
            message = "succeeded" if ok else f"{command.state}: {reason}"
            events.record(session, server, "backup", f"{command.kind} {message}")
        policy.results_seen_at = command.finished_at
    await session.flush()
    return len(done)


async def _absorb_backup(
    session: AsyncSession,
    policy: BackupPolicy,
    command: Command,
    result: dict[str, Any] | None,
    reason: str,
) -> None:
    if result is None:
        policy.last_failure_at, policy.last_error = command.finished_at, reason
        return
    policy.last_success_at = command.finished_at
    exists = await session.scalar(
        select(BackupSnapshot.id).where(
            BackupSnapshot.server_id == policy.server_id,
            BackupSnapshot.short_id == result["short_id"],
        )
    )
    if exists is None:
        session.add(
            BackupSnapshot(
                tenant_id=policy.tenant_id,
                server_id=policy.server_id,
                short_id=result["short_id"],
                taken_at=datetime.fromisoformat(result["time"]),
                root=result.get("root", "/"),
                paths="\n".join(result.get("paths", [])),
                data_added=result.get("data_added", 0),
                bytes_processed=result.get("total_bytes_processed", 0),
                files=result.get("total_files_processed", 0),
                duration_seconds=result.get("duration_seconds", 0.0),
                offsite_copied=bool(result.get("offsite_copied")),
            )
        )


async def _absorb_forget(
    session: AsyncSession, policy: BackupPolicy, result: dict[str, Any]
) -> None:
    removed = [str(s)[:8] for s in result.get("removed", [])]
    if removed:
        await session.execute(
            delete(BackupSnapshot).where(
                BackupSnapshot.server_id == policy.server_id,
                BackupSnapshot.short_id.in_(removed),
            )
        )


async def _absorb_listing(
    session: AsyncSession, policy: BackupPolicy, result: dict[str, Any]
) -> None:
    """The repository is the truth: rows for snapshots it no longer has go."""
    present = [str(s.get("short_id") or s.get("id", ""))[:8] for s in result.get("snapshots", [])]
    await session.execute(
        delete(BackupSnapshot).where(
            BackupSnapshot.server_id == policy.server_id,
            BackupSnapshot.short_id.not_in(present),
        )
    )
