"""A thin typed adapter over the restic CLI and its ``--json`` output.

Why not resticpy: it keeps the repository and password in module globals (one repository
per process, where a backup run talks to a primary and an offsite repository at once),
reads the password only from a file, and runs restic to completion, so it cannot stream
the progress lines restic prints while a backup runs.

Secrets never touch disk or another process's environment: the repository password goes to
restic through a pipe (``--password-file /dev/fd/N``), and backend credentials (S3 keys,
…) are put only into the environment of the restic child itself. That environment is
fixed — ``mailfleet.restic.SAFE_PATH``, root's home, UTC, and the backend credentials the
shared allowlist accepts — never the agent's own, and restic runs by absolute path: a
payload cannot set ``PATH`` or ``LD_PRELOAD`` for a process that runs as root.

Each restic child dies with the agent (``PR_SET_PDEATHSIG``), so a killed agent leaves at
most a stale lock. Every restic run against a repository leaves a marker in the cache
directory while it runs; a marker whose agent is gone means that run was interrupted, and
the next run against the repository first removes the stale locks (``restic unlock``
removes only locks whose holder is gone, or older than 30 minutes): a lock left beside a
shared one would otherwise refuse an operator's ``restic check`` until someone unlocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import pwd
import re
import secrets
import shutil
import signal
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.errors import CommandError
from mailfleet.restic import (
    DENIED,
    KEY_MISMATCH,
    LOCKED,
    NO_REPOSITORY,
    REFUSED_CREDENTIALS,
    SAFE_PATH,
    UNREACHABLE,
    env_problem,
    repository_url_problem,
)

# restic exits 3 when a snapshot was made but some files could not be read (a message moved
# by the MTA while restic walked the directory): the snapshot is usable, with warnings.
PARTIAL = 3
RUNNING_DIR = "running"  # under the cache directory: one marker per restic run
_NO_MARKER = ("init", "unlock", "version")
_DIAGNOSES = (
    ("wrong password or no key found", KEY_MISMATCH),
    ("signature we calculated does not match", REFUSED_CREDENTIALS),  # S3: wrong secret
    ("access key id you provided does not exist", REFUSED_CREDENTIALS),  # S3: unknown key
    ("access denied", REFUSED_CREDENTIALS),
    ("unable to open config file", NO_REPOSITORY),
    ("no space left on device", "the repository's storage is full (no space left on device)"),
    ("repository is already locked", LOCKED),
    ("connection refused", f"{UNREACHABLE} (connection refused)"),
    ("no such host", f"{UNREACHABLE} (unknown host)"),
    ("i/o timeout", f"{UNREACHABLE} (timeout)"),
    ("permission denied", DENIED),
)


@dataclass(frozen=True)
class Repository:
    """Where snapshots go: any restic backend URL, its password and backend credentials."""

    url: str
    password: str = field(repr=False)
    env: Mapping[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_payload(cls, url: Any, password: Any, env: Any, name: str) -> Repository:
        if not isinstance(url, str) or not url:
            raise CommandError(f"payload.{name}.url: a restic repository URL")
        if not isinstance(password, str) or not password:
            raise CommandError(f"payload.{name}: no repository password was delivered")
        problem = repository_url_problem(url)
        if problem is not None:
            raise CommandError(f"payload.{name}.url: {problem}")
        if env is None:
            env = {}
        if not isinstance(env, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in env.items()
        ):
            raise CommandError(f"payload.{name}_env: a map of environment names to strings")
        refused = env_problem(env)
        if refused is not None:
            raise CommandError(f"payload.{name}_env.{refused[0]}: {refused[1]}")
        return cls(url, password, dict(env))


_HOST = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def snapshot_host(payload: dict[str, Any]) -> str:
    """The ``--host`` snapshots are filed under (the server's id): a name, never an option."""
    host = payload.get("host") or "mailfleet"
    if not isinstance(host, str) or not _HOST.match(host):
        raise CommandError("payload.host: letters, digits, '.', '_' and '-', not first")
    return host


class ResticError(CommandError):
    """restic failed; ``reason`` is the diagnosis, the message adds restic's own words."""

    def __init__(self, action: str, stderr: str, code: int | None = None) -> None:
        text = " ".join(stderr.split())
        lowered = text.lower()
        self.reason = next((why for needle, why in _DIAGNOSES if needle in lowered), None)
        if code is not None and code < 0:
            ended = f"killed by signal {-code}"
        else:
            ended = f"exit code {code}"
        detail = self.reason or (text[-300:] if text else f"failed without a message ({ended})")
        super().__init__(f"restic {action}: {detail}")


def _with_parent_death() -> list[str]:
    """A prefix making the child die with the agent (``PR_SET_PDEATHSIG`` through
    util-linux's ``setpriv``, which every Debian/Ubuntu has). Not ``preexec_fn``: Python
    code between fork and exec runs gRPC's fork handlers in the child, which abort."""
    setpriv = shutil.which("setpriv", path=SAFE_PATH)
    return [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []


def child_env(backend: Mapping[str, str]) -> dict[str, str]:
    """restic's whole environment: fixed values and the (allowlisted) backend credentials.
    ``HOME`` is the account's, for ``ssh`` (sftp) and rclone's configuration; ``TZ`` is
    UTC so retention buckets days the same on every server."""
    home = pwd.getpwuid(os.geteuid()).pw_dir
    return {"PATH": SAFE_PATH, "HOME": home, "TZ": "UTC", **backend,
            "RESTIC_PROGRESS_FPS": "2"}  # fmt: skip


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def _password_pipes(*passwords: str) -> Iterator[list[int]]:
    """Read ends of pipes holding each password (small enough for the pipe buffer)."""
    ends: list[int] = []
    try:
        for password in passwords:
            read, write = os.pipe()
            ends.append(read)
            try:
                os.write(write, password.encode())
            finally:
                os.close(write)
        yield ends
    finally:
        for fd in ends:
            os.close(fd)


class Restic:
    """restic against one repository (and, for ``copy``, a source repository)."""

    def __init__(self, repository: Repository, cache_dir: Path, binary: str = "restic") -> None:
        self.repository, self.cache_dir = repository, cache_dir
        found = binary if binary.startswith("/") else shutil.which(binary, path=SAFE_PATH)
        self.binary = found

    def _digest(self, repository: Repository) -> str:
        return hashlib.sha256(repository.url.encode()).hexdigest()[:24]

    @contextlib.contextmanager
    def _marked(self, action: str, source: Repository | None) -> Iterator[None]:
        """A marker naming this process for each repository restic locks while it runs."""
        if action in _NO_MARKER:
            yield
            return
        directory = self.cache_dir / RUNNING_DIR
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        token = f"{os.getpid()}.{secrets.token_hex(4)}"
        locked = [self.repository] + ([source] if source else [])
        markers = [directory / f"{self._digest(r)}.{token}" for r in locked]
        try:
            for marker in markers:
                marker.touch(mode=0o600)
            yield
        finally:
            for marker in markers:
                marker.unlink(missing_ok=True)

    def interrupted_runs(self) -> list[Path]:
        """Markers of runs against this repository whose agent process is gone."""
        directory, digest = self.cache_dir / RUNNING_DIR, self._digest(self.repository)
        found = []
        for marker in directory.glob(f"{digest}.*") if directory.is_dir() else ():
            pid = marker.name.split(".")[1]
            if pid.isdigit() and not _alive(int(pid)):
                found.append(marker)
        return found

    async def run(
        self,
        action: str,
        *args: str,
        on_json: Callable[[dict[str, Any]], None] | None = None,
        source: Repository | None = None,
        ok: tuple[int, ...] = (0,),
        limit_seconds: float = 24 * 3600.0,
    ) -> tuple[int, list[dict[str, Any]], str]:
        """Run ``restic <action> <args>``; returns the exit code, every JSON line printed
        (each also given to ``on_json`` as it arrives) and the last of stdout's text."""
        passwords = [self.repository.password] + ([source.password] if source else [])
        backend = dict(self.repository.env)
        if source is not None:
            backend.update({k: v for k, v in source.env.items() if k not in backend})
        env = child_env(backend)
        if self.binary is None:
            raise CommandError("restic is not installed on this server")
        with _password_pipes(*passwords) as fds, self._marked(action, source):
            command = [
                self.binary,
                action,
                "--repo",
                self.repository.url,
                "--password-file",
                f"/dev/fd/{fds[0]}",
                "--cache-dir",
                str(self.cache_dir),
            ]
            if source is not None:
                command += ["--from-repo", source.url, "--from-password-file", f"/dev/fd/{fds[1]}"]
            process = await asyncio.create_subprocess_exec(
                *_with_parent_death(),
                *command,
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                pass_fds=fds,
            )
            for fd in fds:  # restic holds its copies; the pipes close with it
                os.close(fd)
            fds.clear()
            try:
                code, messages, text, stderr = await asyncio.wait_for(
                    self._collect(process, on_json), limit_seconds
                )
            except (TimeoutError, asyncio.CancelledError):
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGINT)  # restic removes its lock on SIGINT
                try:
                    await asyncio.wait_for(process.wait(), 10)
                except TimeoutError:
                    process.kill()
                    await process.wait()
                raise
        if code not in ok:
            raise ResticError(action, stderr or text, code)
        return code, messages, text

    @staticmethod
    async def _collect(
        process: asyncio.subprocess.Process, on_json: Callable[[dict[str, Any]], None] | None
    ) -> tuple[int, list[dict[str, Any]], str, str]:
        assert process.stdout is not None and process.stderr is not None
        messages: list[dict[str, Any]] = []
        text: list[str] = []
        stderr_task = asyncio.create_task(process.stderr.read())
        async for raw in process.stdout:
            line = raw.decode(errors="replace").strip()
            if line.startswith(("{", "[")):
                try:
                    parsed = json.loads(line)
                except ValueError:
                    text.append(line)
                    continue
                for item in parsed if isinstance(parsed, list) else [parsed]:
                    if isinstance(item, dict):
                        messages.append(item)
                        if on_json is not None:
                            on_json(item)
                continue
            if line:
                text = [*text, line][-20:]
        code = await process.wait()
        stderr = (await stderr_task).decode(errors="replace")
        return code, messages, "\n".join(text), stderr[-4000:]

    # -- the operations MailFleet uses --------------------------------------------------------

    async def run_prepared(
        self,
        action: str,
        *args: str,
        create: bool = False,
        chunker_from: Repository | None = None,
        **options: Any,
    ) -> tuple[int, list[dict[str, Any]], str, bool]:
        """``run``, removing stale locks — and with ``create``, making a missing repository —
        when restic says so (each restic start costs a key derivation, so nothing is checked
        up front). The last value says whether the repository was created."""
        created = unlocked = False
        stale = self.interrupted_runs()
        if stale:
            await self._unlock_after_interruption(stale)
            unlocked = True
        while True:
            try:
                return (*await self.run(action, *args, **options), created)
            except ResticError as exc:
                if exc.reason == NO_REPOSITORY and create and not created:
                    await self.init(chunker_from)
                    created = True
                elif exc.reason == LOCKED and not unlocked:
                    await self.unlock_stale()  # a live lock stays, and the retry says so
                    unlocked = True
                else:
                    raise

    async def init(self, chunker_from: Repository | None = None) -> None:
        """Create the repository. An offsite copy takes the primary's chunker parameters so
        ``restic copy`` deduplicates."""
        extra = ("--copy-chunker-params",) if chunker_from else ()
        await self.run("init", *extra, source=chunker_from, limit_seconds=300)

    async def unlock_stale(self) -> None:
        """Remove locks left by a restic that is gone (a killed agent); live ones stay."""
        await self.run("unlock", limit_seconds=300)

    async def _unlock_after_interruption(self, markers: list[Path]) -> None:
        """A run against this repository was killed with its agent: its lock goes before
        anything else runs (a missing repository has no locks to remove)."""
        try:
            await self.unlock_stale()
        except ResticError as exc:
            if exc.reason != NO_REPOSITORY:
                raise
        for marker in markers:
            marker.unlink(missing_ok=True)

    async def snapshots(self, *args: str) -> list[dict[str, Any]]:
        _, messages, _ = await self.run("snapshots", "--json", *args, limit_seconds=600)
        return messages
