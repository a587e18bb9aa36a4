"""The agent's on-disk command journal: never run a command twice, even across kill -9.

The control plane delivers commands at least once. Before running one the agent calls
:meth:`CommandJournal.begin`, which makes a "started" record durable first; a redelivered
id is then refused, and a finished one can have its result re-reported. The journal is an
append-only file of JSON lines, each append flushed and fsynced, so after a crash a record
is either wholly there or is the torn last line, which loading drops (its writer never got
an answer, so nothing acted on it).

Only the newest ``keep_finished`` finished commands are remembered after a compaction; a
redelivery older than that would be accepted again, so the control plane's redelivery
window must stay well inside it. Started-but-unfinished ids are never forgotten.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import json
import logging
import os
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Literal

State = Literal["started", "finished"]

_log = logging.getLogger(__name__)

# Below this many records a log is never compacted: rewriting tiny files gains nothing.
_COMPACT_FLOOR = 64
# Compact once the log holds this many times more records than the live state needs.
_COMPACT_FACTOR = 4


class JournalCorruptError(Exception):
    """A record before the last one is unreadable: not a torn append, so refuse to guess."""


class JournalInUseError(Exception):
    """Another open journal (in this or another process) holds the lock on this file."""


class CommandJournal:
    """Durable record of which commands were started and finished, with their results.

    One process may have a given journal open at a time (an exclusive lock on
    ``<path>.lock``); a second agent sharing it could run a command twice. Methods are
    safe to call from several threads.
    """

    def __init__(self, path: Path, keep_finished: int = 10_000) -> None:
        if keep_finished < 1:
            raise ValueError("keep_finished must be at least 1")
        self.path = path
        self.keep_finished = keep_finished
        self._mutex = threading.Lock()
        self._started: dict[str, float] = {}
        # Insertion order is finish order, so the first entries are the oldest.
        self._finished: dict[str, tuple[bytes, float]] = {}
        self._records = 0
        self._size = 0  # bytes of whole records in the log: where a failed append is cut back to
        self._fd = -1
        self._lock_fd = _acquire_lock(path.with_name(path.name + ".lock"))
        try:
            self._load()
            self._fd = _open_append(path)
            self._size = os.fstat(self._fd).st_size
        except BaseException:
            self.close()
            raise
        self._maybe_compact()

    # -- queries -----------------------------------------------------------------------

    def state(self, command_id: str) -> State | None:
        """Where ``command_id`` got to, or None if this journal never saw it."""
        with self._mutex:
            if command_id in self._finished:
                return "finished"
            if command_id in self._started:
                return "started"
            return None

    def result(self, command_id: str) -> bytes | None:
        """The recorded result of a finished command, to re-report on redelivery."""
        with self._mutex:
            entry = self._finished.get(command_id)
            return None if entry is None else entry[0]

    def interrupted(self) -> list[str]:
        """Ids started but never finished, oldest first: a crash hit them mid-run.

        A restarted agent reports these as failed-interrupted (and may :meth:`finish` them
        with that failure) instead of running them again.
        """
        with self._mutex:
            return list(self._started)

    # -- changes -----------------------------------------------------------------------

    def begin(self, command_id: str) -> bool:
        """Durably mark ``command_id`` started; False means it was seen before: don't run it."""
        if not command_id:
            raise ValueError("command id must not be empty")
        with self._mutex:
            if command_id in self._started or command_id in self._finished:
                return False
            at = time.time()
            self._append({"id": command_id, "state": "started", "at": at})
            self._started[command_id] = at
            return True

    def finish(self, command_id: str, result: bytes) -> None:
        """Durably record a started command's result (also how interrupted ids are closed)."""
        with self._mutex:
            if command_id not in self._started:
                if command_id in self._finished:
                    raise ValueError(f"command {command_id!r} is already finished")
                raise ValueError(f"command {command_id!r} was never started")
            at = time.time()
            self._append({"id": command_id, "state": "finished", "result": _b64(result), "at": at})
            del self._started[command_id]
            self._finished[command_id] = (result, at)
            self._maybe_compact()

    def close(self) -> None:
        """Release the file and the lock; the journal must not be used afterwards."""
        with self._mutex:
            for fd in (self._fd, self._lock_fd):
                if fd >= 0:
                    os.close(fd)
            self._fd = self._lock_fd = -1

    def __enter__(self) -> CommandJournal:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------

    def _load(self) -> None:
        """Replay the log; drop (and cut off) a torn tail so later appends start clean."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return
        good_end = 0  # byte offset just past the last complete, valid record
        bad_line: int | None = None
        pos = 0
        line_no = 0
        while pos < len(data):
            newline = data.find(b"\n", pos)
            end = len(data) if newline < 0 else newline + 1
            line_no += 1
            record = _parse(data[pos:end]) if newline >= 0 else None
            if record is None:
                bad_line = bad_line or line_no
            elif bad_line is not None:
                raise JournalCorruptError(f"{self.path}: line {bad_line} is unreadable")
            else:
                self._apply(*record)
                self._records += 1
                good_end = end
            pos = end
        if good_end < len(data):
            with open(self.path, "r+b") as f:
                f.truncate(good_end)
                f.flush()
                os.fsync(f.fileno())

    def _apply(self, command_id: str, state: State, result: bytes | None, at: float) -> None:
        if state == "started":
            if command_id not in self._finished:
                self._started[command_id] = at
        else:
            assert result is not None
            self._started.pop(command_id, None)
            self._finished.pop(command_id, None)
            self._finished[command_id] = (result, at)

    def _append(self, record: dict[str, object]) -> None:
        if self._fd < 0:
            raise ValueError(f"the journal {self.path} is closed (or failed)")
        line = _line(record)
        try:
            _write_all(self._fd, line)
            os.fsync(self._fd)
        except BaseException:
            # A partial line (disk full) would glue itself to the next record: cut it off,
            # and if even that fails stop accepting changes rather than corrupt the log.
            try:
                os.ftruncate(self._fd, self._size)
            except OSError:
                os.close(self._fd)
                self._fd = -1
            raise
        self._size += len(line)
        self._records += 1

    def _live(self) -> int:
        return len(self._started) + min(len(self._finished), self.keep_finished)

    def _maybe_compact(self) -> None:
        """Compact if the log has outgrown its live state; a failure leaves the log as is."""
        if self._records <= max(_COMPACT_FACTOR * self._live(), _COMPACT_FLOOR):
            return
        try:
            self._compact()
        except OSError:
            # The old log is still complete and valid; the next change retries.
            _log.warning("compacting %s failed", self.path, exc_info=True)

    def _compact(self) -> None:
        """Atomically rewrite the log with only what is still worth remembering."""
        kept = list(self._finished.items())[-self.keep_finished :]
        lines = [
            _line({"id": cid, "state": "finished", "result": _b64(res), "at": at})
            for cid, (res, at) in kept
        ]
        lines += [
            _line({"id": cid, "state": "started", "at": at}) for cid, at in self._started.items()
        ]
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                _write_all(fd, b"".join(lines))
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        # From here on the new log is the journal, whatever else fails.
        self._finished = dict(kept)
        self._records = len(lines)
        old_fd, self._fd = self._fd, -1
        os.close(old_fd)
        _fsync_dir(self.path.parent)
        self._fd = _open_append(self.path)
        self._size = os.fstat(self._fd).st_size


def _parse(line: bytes) -> tuple[str, State, bytes | None, float] | None:
    """One log line as (id, state, result, at), or None if it is not a whole valid record."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    command_id, state, at = record.get("id"), record.get("state"), record.get("at")
    if not isinstance(command_id, str) or not command_id:
        return None
    if not isinstance(at, int | float) or isinstance(at, bool):
        return None
    if state == "started":
        return command_id, "started", None, float(at)
    if state == "finished":
        encoded = record.get("result")
        if not isinstance(encoded, str):
            return None
        try:
            result = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            return None
        return command_id, "finished", result, float(at)
    return None


def _line(record: dict[str, object]) -> bytes:
    return json.dumps(record, separators=(",", ":")).encode() + b"\n"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _open_append(path: Path) -> int:
    """Open the log for appending, making a newly created file's directory entry durable."""
    existed = path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    if not existed:
        _fsync_dir(path.parent)
    return fd


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _acquire_lock(lock_path: Path) -> int:
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise JournalInUseError(f"{lock_path} is held by another open journal") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(fd)
        raise
    return fd
