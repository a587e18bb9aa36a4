"""Processes of a local VPS, read from ``/proc``, and stopping them safely.

A process id alone is not an identity: after a process exits its id can be handed to an
unrelated one. Boot processes are therefore recorded with their start time (field 22 of
``/proc/<pid>/stat``, in clock ticks since boot), and a recorded id whose start time no longer
matches is treated as gone rather than signalled.

A zombie (state ``Z``) counts as gone: it has exited and holds nothing but its table entry
until its parent (possibly init, for orphans) collects it.
"""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class ProcessRef:
    """A process we started: its id and start time (``-1``: unknown, never signalled)."""

    pid: int
    start: int


@dataclass(frozen=True)
class ProcStat:
    """The few fields of ``/proc/<pid>/stat`` we need."""

    pid: int
    state: str
    pgrp: int
    start: int

    @property
    def running(self) -> bool:
        return self.state not in ("Z", "X")


def read_stat(pid: int) -> ProcStat | None:
    """The process's stat line, or None if there is no such process."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) is in parentheses and may itself contain ") ".
    fields = text[text.rfind(")") + 2 :].split()
    return ProcStat(pid=pid, state=fields[0], pgrp=int(fields[2]), start=int(fields[19]))


def is_running(pid: int, start: int | None = None) -> bool:
    """The process exists, has not exited, and (if given) started at ``start``."""
    stat = read_stat(pid)
    return stat is not None and stat.running and (start is None or stat.start == start)


def group_members(ref: ProcessRef) -> set[int]:
    """Running members of the process group the boot process ``ref`` leads.

    If ``ref.pid`` now belongs to a process that started at another time, the id was
    reused, which the kernel does only once no group uses it: our group is empty. If the
    leader is gone but the id unused, any group with that id is still ours.
    """
    if ref.start < 0:
        return set()
    leader = read_stat(ref.pid)
    if leader is not None and leader.start != ref.start:
        return set()
    members: set[int] = set()
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            stat = read_stat(int(entry.name))
            if stat is not None and stat.pgrp == ref.pid and stat.running:
                members.add(stat.pid)
    return members


def send(pids: set[int], sig: signal.Signals) -> None:
    """Signal each process; ones that are already gone are skipped."""
    for pid in pids:
        if pid in (0, 1, os.getpid()):
            continue  # never: ourselves, init, or "our own group"
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def still_running(pids: set[int]) -> set[int]:
    return {pid for pid in pids if is_running(pid)}
