"""The control plane's own state into restic: the database and Vault.

``backup_state`` stores two snapshots in the repository ``MAILFLEET_STATE_BACKUP_REPOSITORY``
(tag ``mailfleet-state``): ``/database.pgdump`` (``pg_dump --format=custom``) or
``/database.sqlite3`` (SQLite's online backup API: consistent while the control plane
writes), and ``/vault.snap`` (``sys/storage/raft/snapshot``: integrated raft storage, which
the embedded OpenBao uses and production Vault should). Nothing touches disk unencrypted
except the SQLite copy, in a private temporary directory, and every stream goes straight
into ``restic backup --stdin``.

``restore_state`` reverses it with the control plane stopped: ``pg_restore --clean``'s
script run by ``psql --single-transaction`` (all or nothing) or the SQLite file swapped in
whole (the old one kept beside it), and ``sys/storage/raft/snapshot-force``.

A remote repository's backend credentials (S3 keys, …) come from the file named by
``MAILFLEET_STATE_BACKUP_ENV_FILE`` (``NAME=value`` lines, readable by its owner only), never
from Vault: this repository holds the Vault snapshot a recovery needs. restic runs by
absolute path with a fixed environment plus those credentials, under the same allowlist
the agents use (``mailfleet.restic``).

restic runs here through a few lines of its own rather than the agent's adapter: the
control plane never imports agent code.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import shutil
import socket
import sqlite3
import stat
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import URL

from control_plane.db.engine import Database
from control_plane.db.rls import CREATE_TENANT_ROLE
from control_plane.errors import MailFleetError
from control_plane.files import write_private
from control_plane.settings import Settings
from control_plane.vault.client import Vault
from mailfleet.restic import SAFE_PATH, env_problem

TAG = "mailfleet-state"
PG_DUMP, SQLITE_COPY, VAULT_SNAPSHOT = "database.pgdump", "database.sqlite3", "vault.snap"

# Every partitioned table of the database being restored over, as DROP statements.
DROP_PARTITIONED = """
SELECT format('DROP TABLE IF EXISTS %I.%I CASCADE;', n.nspname, c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'p' AND NOT c.relispartition AND n.nspname = current_schema()
"""


class StateBackupError(MailFleetError):
    """The control plane's state could not be backed up or restored."""


@dataclass(frozen=True)
class StateRepository:
    url: str
    password: str = field(repr=False)
    env: dict[str, str] = field(default_factory=dict, repr=False)


def _repository(settings: Settings) -> StateRepository:
    if not settings.state_backup_repository or settings.state_backup_password_file is None:
        raise StateBackupError(
            "set MAILFLEET_STATE_BACKUP_REPOSITORY and MAILFLEET_STATE_BACKUP_PASSWORD_FILE"
        )
    try:
        password = settings.state_backup_password_file.read_text().strip()
    except OSError as exc:
        raise StateBackupError(f"MAILFLEET_STATE_BACKUP_PASSWORD_FILE: {exc.strerror}") from None
    env = read_env_file(settings.state_backup_env_file) if settings.state_backup_env_file else {}
    return StateRepository(settings.state_backup_repository, password, env)


def read_env_file(path: Path) -> dict[str, str]:
    """``NAME=value`` lines (``#`` comments, blank lines); only restic's backend credential
    names, and only from a file no one but its owner can read."""
    where = "MAILFLEET_STATE_BACKUP_ENV_FILE"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        with os.fdopen(fd, encoding="utf-8") as handle:
            if stat.S_IMODE(os.fstat(handle.fileno()).st_mode) & 0o077:
                raise StateBackupError(f"{where}: {path} is readable by others; chmod 600 it")
            text = handle.read()
    except OSError as exc:
        raise StateBackupError(f"{where}: {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise StateBackupError(f"{where}: {path} is not UTF-8 text") from None
    env: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, equals, value = line.partition("=")
        if not equals:
            raise StateBackupError(f"{where}: line {number} is not NAME=value")
        env[name.strip()] = value
    refused = env_problem(env)
    if refused is not None:
        raise StateBackupError(f"{where}: {refused[0]}: {refused[1]}")
    return env


def _restic_env(repository: StateRepository) -> dict[str, str]:
    """restic's whole environment: fixed, plus the backend credentials."""
    home = pwd.getpwuid(os.geteuid()).pw_dir
    return {"PATH": SAFE_PATH, "HOME": home, "TZ": "UTC", **repository.env}


def _libpq(url: URL) -> tuple[str, dict[str, str]]:
    """A libpq URI without the password, which goes into the child's PGPASSWORD."""
    plain = url.set(drivername="postgresql", password=None)
    env = {"PGPASSWORD": url.password} if url.password else {}
    return plain.render_as_string(hide_password=False), {k: str(v) for k, v in env.items()}


async def _pipe(
    producer: list[str] | None,
    consumer: list[str],
    *,
    producer_env: dict[str, str] | None = None,
    consumer_env: dict[str, str] | None = None,
    stdin_data: bytes | None = None,
    pass_fds: tuple[int, ...] = (),
) -> bytes:
    """``producer | consumer`` (or ``stdin_data`` into the consumer); the consumer's stdout.
    Either side failing fails the whole, with its own words. Each side's environment is the
    one given, else a few of this process's variables."""
    read, write = os.pipe()
    first = None
    try:
        if producer is not None:
            first = await asyncio.create_subprocess_exec(
                *producer, stdout=write, stderr=asyncio.subprocess.PIPE,
                env=producer_env or _inherited(),
            )  # fmt: skip
        second = await asyncio.create_subprocess_exec(
            *consumer, stdin=read, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=consumer_env or _inherited(),
            pass_fds=pass_fds,
        )  # fmt: skip
    finally:
        os.close(read)
        if producer is not None or stdin_data is None:
            os.close(write)
    if stdin_data is None:
        out, err = await second.communicate()
    else:
        # Written while the consumer's output is read: a consumer that writes before it has
        # read all its input (pg_restore --file=-) would otherwise fill its stdout pipe and
        # stop reading, and both sides would wait forever.
        (out, err), _ = await asyncio.gather(
            second.communicate(), asyncio.to_thread(_write_all, write, stdin_data)
        )
    if first is not None:
        _, first_err = await first.communicate()
        if first.returncode != 0:
            raise StateBackupError(f"{producer[0] if producer else ''}: {_tail(first_err)}")
    if second.returncode != 0:
        raise StateBackupError(f"{Path(consumer[0]).name} {consumer[1]}: {_tail(err)}")
    return out


def _inherited() -> dict[str, str]:
    """What pg_dump and pg_restore get of this process's environment (the operator's)."""
    return {k: os.environ[k] for k in ("PATH", "LANG", "TZ") if k in os.environ}


def _write_all(fd: int, data: bytes) -> None:
    """All of ``data`` into the pipe; a consumer that quits early (its own error, reported by
    the caller from its exit status) leaves the rest unwritten."""
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except BrokenPipeError:
        pass
    finally:
        os.close(fd)


def _tail(raw: bytes) -> str:
    return " ".join(raw.decode(errors="replace").split())[-300:] or "failed without a message"


def _restic(repository: StateRepository, password_fd: int, *args: str) -> list[str]:
    binary = shutil.which("restic", path=SAFE_PATH)
    if binary is None:
        raise StateBackupError("restic is not installed on the control plane's host")
    return [binary, args[0], "--repo", repository.url, "--password-file",
            f"/dev/fd/{password_fd}", "--no-cache", *args[1:]]  # fmt: skip


def _password_fd(password: str) -> int:
    """The read end of a pipe holding the password (restic's ``--password-file``)."""
    read, write = os.pipe()
    os.write(write, password.encode())
    os.close(write)
    return read


async def _run_restic(
    repository: StateRepository,
    *args: str,
    producer: list[str] | None = None,
    stdin_data: bytes | None = b"",
    **kwargs: Any,
) -> bytes:
    """``restic <args>`` against the state repository (fed by ``producer`` or
    ``stdin_data``); its stdout."""
    read = _password_fd(repository.password)
    try:
        command = _restic(repository, read, *args)
        return await _pipe(producer, command, stdin_data=None if producer else stdin_data,
                           consumer_env=_restic_env(repository), pass_fds=(read,),
                           **kwargs)  # fmt: skip
    finally:
        os.close(read)


async def ensure_repository(repository: StateRepository) -> None:
    """Create the state repository on first use."""
    try:
        await _run_restic(repository, "cat", "config")
        return
    except StateBackupError as exc:
        if "unable to open config file" not in str(exc):
            raise
    await _run_restic(repository, "init")


async def _into_restic(
    repository: StateRepository, name: str, producer: list[str] | None, **kwargs: Any
) -> None:
    await _run_restic(repository, "backup", "--stdin", "--stdin-filename", name, "--tag", TAG,
                      "--host", socket.gethostname(), producer=producer, **kwargs)  # fmt: skip


async def _from_restic(repository: StateRepository, name: str, at: datetime | None) -> bytes:
    snapshot = await _snapshot_at(repository, name, at)
    return await _run_restic(repository, "dump", snapshot, f"/{name}")


async def _snapshot_at(repository: StateRepository, name: str, at: datetime | None) -> str:
    listed = await _run_restic(
        repository, "snapshots", "--json", "--tag", TAG, "--path", f"/{name}"
    )
    snapshots = sorted(json.loads(listed or b"[]"), key=lambda s: str(s["time"]))
    if at is not None:
        snapshots = [s for s in snapshots if datetime.fromisoformat(s["time"]) <= at]
    if not snapshots:
        when = f" at or before {at.isoformat()}" if at else ""
        raise StateBackupError(f"no backup of {name}{when} in the state repository")
    return str(snapshots[-1]["id"])


async def backup_state(settings: Settings, db: Database, vault: Vault) -> dict[str, str]:
    """Both snapshots, the database first; what was stored."""
    repository = _repository(settings)
    await ensure_repository(repository)
    stored: dict[str, str] = {}
    if db.dialect == "postgresql":
        uri, env = _libpq(db.url)
        dump = ["pg_dump", "--format=custom", "--no-owner", f"--dbname={uri}"]
        await _into_restic(repository, PG_DUMP, dump, producer_env={**_inherited(), **env})
        stored["database"] = PG_DUMP
    else:
        source = Path(str(db.url.database))
        with tempfile.TemporaryDirectory(prefix="mailfleet-state-") as scratch:
            copy = Path(scratch) / SQLITE_COPY
            await asyncio.to_thread(_sqlite_copy, source, copy)
            await _into_restic(repository, SQLITE_COPY, ["cat", str(copy)])
        stored["database"] = SQLITE_COPY
    snapshot = await vault.call(lambda: vault.client.sys.take_raft_snapshot(), "raft snapshot")
    if getattr(snapshot, "status_code", 200) != 200:
        raise StateBackupError(f"Vault raft snapshot: HTTP {snapshot.status_code}")
    await _into_restic(repository, VAULT_SNAPSHOT, None, stdin_data=snapshot.content)
    stored["vault"] = VAULT_SNAPSHOT
    return stored


def _swap_sqlite(target: Path, data: bytes) -> None:
    """The restored file in place of the current one, which is kept as ``.before-restore``."""
    incoming = target.with_name(target.name + ".restoring")
    write_private(incoming, data)  # the whole database: its owner's only, at once
    if target.exists():
        target.replace(target.with_name(target.name + ".before-restore"))
    for suffix in ("-wal", "-shm"):
        target.with_name(target.name + suffix).unlink(missing_ok=True)
    incoming.replace(target)


def _sqlite_copy(source: Path, target: Path) -> None:
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    try:
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()


async def restore_state(
    settings: Settings, db: Database, vault: Vault, at: datetime | None
) -> dict[str, str]:
    """The database and Vault as they were at ``at`` (default: the newest backup). Run with
    every ``mailfleet serve`` stopped."""
    repository = _repository(settings)
    restored: dict[str, str] = {}
    if db.dialect == "postgresql":
        dump = await _from_restic(repository, PG_DUMP, at)
        async with db.engine.begin() as conn:
            await conn.execute(text(CREATE_TENANT_ROLE))
            prelude = "".join(f"{drop}\n" for drop in await conn.scalars(text(DROP_PARTITIONED)))
        await db.engine.dispose()
        uri, env = _libpq(db.url)
        client_env = {**_inherited(), **env}
        # pg_restore --clean drops a partition's inherited key before the table, which
        # PostgreSQL refuses; dropping the partitioned tables first (their partitions go with
        # them) makes those statements no-ops. Prelude and script run as one transaction.
        clean = ["pg_restore", "--clean", "--if-exists", "--no-owner", "--file=-"]
        script = await _pipe(None, clean, stdin_data=dump, consumer_env=client_env)
        restore = ["psql", "--no-psqlrc", "--quiet", "--single-transaction",
                   "--set=ON_ERROR_STOP=1", f"--dbname={uri}"]  # fmt: skip
        await _pipe(None, restore, stdin_data=prelude.encode() + script, consumer_env=client_env)
        restored["database"] = PG_DUMP
    else:
        data = await _from_restic(repository, SQLITE_COPY, at)
        await db.engine.dispose()
        await asyncio.to_thread(_swap_sqlite, Path(str(db.url.database)), data)
        restored["database"] = SQLITE_COPY
    snapshot = await _from_restic(repository, VAULT_SNAPSHOT, at)
    await vault.call(
        lambda: vault.client.sys.force_restore_raft_snapshot(snapshot), "raft snapshot restore"
    )
    restored["vault"] = VAULT_SNAPSHOT
    return restored
