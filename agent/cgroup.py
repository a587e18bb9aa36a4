"""The VPS's cgroup: its memory and CPU limits and usage, read from cgroup v2 or v1.

Where a "VPS" is a cgroup on a bigger host (the local provider's namespaces), the machine's
figures are the host's: a 1 GB plan would report the host's 25 GB. ``vps_cgroup`` in
agent.toml names the VPS's cgroup, as a path from the hierarchy's root the way
``/proc/<pid>/cgroup`` writes it (``/mailfleet-local/mf-1a2b3c4d``); it is the same in every
hierarchy, so one path serves cgroup v2 and each v1 controller. On a real VPS it is unset:
the agent's own systemd unit limit is not the server's memory.

What is reported, and why:

- memory limit: ``memory.max`` (v2) or ``memory.limit_in_bytes`` (v1); ``max`` or v1's
  "unlimited" (close to 2**63) is no limit.
- memory used: the working set, as the kernel's reclaim and ``docker stats`` count it —
  usage (``memory.current``, or v1 ``memory.usage_in_bytes``) minus the inactive file cache
  (``inactive_file`` in ``memory.stat``; v1's hierarchical ``total_inactive_file``), which
  the kernel drops before it would kill anything.
- CPUs: quota / period (``cpu.max``, or v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``);
  ``max`` or ``-1`` is no limit.
- CPU time: ``usage_usec`` in ``cpu.stat`` (v2) or ``cpuacct.usage`` (v1, nanoseconds).

Hierarchies are found in ``/proc/self/mountinfo``: v1 when the memory controller is mounted
as a v1 hierarchy (hybrid hosts), v2 otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mailfleet.cgroupfs import MOUNTINFO, Mount, mounts

V1_UNLIMITED = 1 << 62  # v1 reports "no limit" as PAGE_COUNTER_MAX pages, just under 2**63


class CgroupError(Exception):
    """The cgroup is not there (or not readable); the message says which file."""


@dataclass(frozen=True)
class CgroupReading:
    """One reading; a limit of None means the cgroup sets none."""

    memory_limit_bytes: int | None
    memory_used_bytes: int
    cpu_limit: float | None  # CPUs (quota / period)
    cpu_seconds: float  # consumed since the cgroup was made


class VpsCgroup:
    """The cgroup at ``path``, located once; ``read`` reads its files each time."""

    def __init__(self, path: str, mountinfo: Path = MOUNTINFO) -> None:
        if not path.startswith("/") or ".." in path.split("/"):
            raise CgroupError(f"vps_cgroup {path!r}: an absolute cgroup path without '..'")
        self.path = path
        try:
            found = mounts(mountinfo)
        except OSError as exc:
            raise CgroupError(f"cannot read {mountinfo}: {exc.strerror}") from None
        v1 = {c: self._where(m) for m in found if m.fstype == "cgroup" for c in m.controllers}
        self.version: Literal[1, 2] = 1
        self.cpu: Path | None = None
        self.cpuacct: Path | None = None
        memory = v1.get("memory")
        if memory is not None:
            self.memory, self.cpu, self.cpuacct = memory, v1.get("cpu"), v1.get("cpuacct")
            return
        for mount in (m for m in found if m.fstype == "cgroup2"):
            directory = self._where(mount)
            if directory is not None and (directory / "memory.max").exists():
                self.version = 2
                self.memory = self.cpu = self.cpuacct = directory
                return
        raise CgroupError(f"cgroup {path} is not mounted here (no memory controller shows it)")

    def _where(self, mount: Mount) -> Path | None:
        directory = mount.directory(self.path)
        return directory if directory is not None and directory.is_dir() else None

    def read(self) -> CgroupReading:
        """Limits and usage now; ``CgroupError`` if the cgroup went away."""
        try:
            return self._read_v2() if self.version == 2 else self._read_v1()
        except (OSError, ValueError, KeyError) as exc:
            raise CgroupError(f"cgroup {self.path}: {exc}") from None

    def _read_v2(self) -> CgroupReading:
        directory = self.memory  # v2: one directory holds every controller's files
        limit = _text(directory / "memory.max")
        usage = int(_text(directory / "memory.current"))
        stat = _stat(directory / "memory.stat")
        quota, period = _text(directory / "cpu.max").split()
        usage_usec = _stat(directory / "cpu.stat")["usage_usec"]
        return CgroupReading(
            memory_limit_bytes=None if limit == "max" else int(limit),
            memory_used_bytes=max(0, usage - stat.get("inactive_file", 0)),
            cpu_limit=None if quota == "max" else int(quota) / int(period),
            cpu_seconds=usage_usec / 1e6,
        )

    def _read_v1(self) -> CgroupReading:
        memory = self.memory
        limit = int(_text(memory / "memory.limit_in_bytes"))
        usage = int(_text(memory / "memory.usage_in_bytes"))
        stat = _stat(memory / "memory.stat")
        inactive = stat.get("total_inactive_file", stat.get("inactive_file", 0))
        cpu_limit = None
        if self.cpu is not None:
            quota = int(_text(self.cpu / "cpu.cfs_quota_us"))
            period = int(_text(self.cpu / "cpu.cfs_period_us"))
            cpu_limit = quota / period if quota > 0 else None
        seconds = 0.0
        if self.cpuacct is not None:
            seconds = int(_text(self.cpuacct / "cpuacct.usage")) / 1e9
        return CgroupReading(
            memory_limit_bytes=None if limit >= V1_UNLIMITED else limit,
            memory_used_bytes=max(0, usage - inactive),
            cpu_limit=cpu_limit,
            cpu_seconds=seconds,
        )


def _text(path: Path) -> str:
    return path.read_text().strip()


def _stat(path: Path) -> dict[str, int]:
    """A ``key value`` per line file (memory.stat, cpu.stat)."""
    values: dict[str, int] = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            values[key] = int(value)
    return values
