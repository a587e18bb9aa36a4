"""The cgroup of a local VPS: its plan's memory and CPUs, enforced and visible to its agent.

A namespace VPS shares the host's kernel, so without a cgroup nothing stops it using the
whole host and its agent reports the host's memory and CPUs. Each VPS therefore gets one
cgroup, ``/<parent>/<namespace>`` (parent ``mailfleet-local`` by default):

- cgroup v2, where the memory controller is on the unified hierarchy: ``memory.max`` and
  ``cpu.max`` (the controllers are enabled in each ancestor's ``cgroup.subtree_control``);
- cgroup v1 otherwise (hybrid hosts): ``memory.limit_in_bytes`` in the memory hierarchy,
  ``cpu.cfs_quota_us``/``cpu.cfs_period_us`` in the cpu hierarchy, and the cpuacct
  hierarchy for the CPU time the agent reports.

The path is the same in every hierarchy; the provider writes it into the VPS's agent.toml
as ``vps_cgroup``, and the agent reads the same files (``agent.cgroup``; both find the
hierarchies with ``mailfleet.cgroupfs``, so they agree). The
boot joins the cgroup before it starts anything (``local_boot.spawn``), so the agent, its
restic children and later the VPS's dockerd (``--cgroup-parent``) are all inside it.
``set_limits`` is the one place limits are written: create and resize both use it.
"""

from __future__ import annotations

import contextlib
import errno
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from control_plane.provisioning.providers.base import ProviderError
from control_plane.provisioning.providers.local_state import Limits
from mailfleet.cgroupfs import MOUNTINFO, mounts

V1_CONTROLLERS = ("memory", "cpu", "cpuacct")
V2_CONTROLLERS = ("memory", "cpu")
CPU_PERIOD_US = 100_000  # the kernel's default CFS period
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True)
class Layout:
    """Where the hierarchies are mounted: one directory per v1 controller, or v2's one."""

    version: Literal[1, 2]
    roots: dict[str, Path]  # controller → the hierarchy's top as mounted here
    prefix: str  # the mounted part of the hierarchy ("/" on a host)

    @property
    def directories(self) -> list[Path]:
        """Each hierarchy once (cpu and cpuacct are often mounted together)."""
        return list(dict.fromkeys(self.roots.values()))


class Cgroups:
    """Creates, limits and removes VPS cgroups under ``parent`` in every hierarchy."""

    def __init__(self, parent: str, mountinfo: Path = MOUNTINFO) -> None:
        if not _NAME.match(parent) or parent in (".", ".."):
            raise ValueError(f"cgroup parent {parent!r} is not a plain directory name")
        self.parent = parent
        self.mountinfo = mountinfo
        self._layout: Layout | None = None

    def layout(self) -> Layout:
        """The hierarchies (found once): v1 where memory is a v1 hierarchy, else v2."""
        if self._layout is None:
            self._layout = _find_layout(self.mountinfo)
        return self._layout

    def path(self, namespace: str) -> str:
        """The VPS's cgroup path, as ``/proc/<pid>/cgroup`` and agent.toml write it."""
        if not _NAME.match(namespace):
            raise ValueError(f"not a cgroup name: {namespace!r}")
        return posixpath.join(self.layout().prefix, self.parent, namespace)

    def directories(self, path: str) -> list[Path]:
        """The cgroup's directory in each hierarchy."""
        layout = self.layout()
        relative = posixpath.relpath(path, layout.prefix)
        if relative.startswith("..") or not relative.startswith(self.parent + "/"):
            raise ProviderError(f"cgroup {path} is not one of this provider's")
        return [top / relative for top in layout.directories]

    def create(self, path: str, limits: Limits) -> None:
        """Make the cgroup in every hierarchy (idempotent) and give it ``limits``."""
        layout = self.layout()
        try:
            if layout.version == 2:
                top = layout.directories[0]
                _enable_controllers(top)
                _enable_controllers(_mkdir(top / self.parent))
            for directory in self.directories(path):
                directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ProviderError(f"cannot create cgroup {path}: {exc}") from None
        self.set_limits(path, limits)

    def set_limits(self, path: str, limits: Limits) -> None:
        """Write the plan's memory and CPU limits (what a resize changes, nothing else)."""
        layout = self.layout()
        memory = limits.memory_mb * 1024 * 1024
        quota = limits.vcpus * CPU_PERIOD_US
        relative = posixpath.relpath(path, layout.prefix)
        writes: list[tuple[Path, str]]
        if layout.version == 2:
            directory = layout.roots["memory"] / relative
            writes = [
                (directory / "memory.max", str(memory)),
                (directory / "cpu.max", f"{quota} {CPU_PERIOD_US}"),
            ]
        else:
            cpu = layout.roots["cpu"] / relative
            writes = [
                (layout.roots["memory"] / relative / "memory.limit_in_bytes", str(memory)),
                (cpu / "cpu.cfs_period_us", str(CPU_PERIOD_US)),
                (cpu / "cpu.cfs_quota_us", str(quota)),
            ]
        for file, value in writes:
            try:
                file.write_text(value)
            except OSError as exc:
                raise ProviderError(f"cannot set {file} to {value}: {exc}") from None

    def procs_files(self, path: str) -> list[Path]:
        """The files a process writes its pid into to join the cgroup in every hierarchy."""
        return [directory / "cgroup.procs" for directory in self.directories(path)]

    def members(self, path: str) -> set[int]:
        """Every process in the cgroup or below it (a VPS's dockerd puts its containers in
        child cgroups), in any hierarchy; none if it does not exist."""
        pids: set[int] = set()
        for top in self.procs_files(path):
            for procs in [top, *sorted(top.parent.glob("*/**/cgroup.procs"))]:
                with contextlib.suppress(FileNotFoundError):
                    pids |= {int(line) for line in procs.read_text().split()}
        return pids

    def remove(self, path: str) -> None:
        """Remove the cgroup everywhere, child cgroups first (its processes must be gone);
        gone already is done."""
        for directory in self.directories(path):
            children = (
                [p for p in directory.glob("**/") if p != directory] if directory.is_dir() else []
            )
            for child in sorted(children, key=lambda p: len(p.parts), reverse=True):
                with contextlib.suppress(FileNotFoundError):
                    child.rmdir()
            try:
                directory.rmdir()
            except FileNotFoundError:
                continue
            except OSError as exc:
                retry = exc.errno == errno.EBUSY  # a process still leaving
                raise ProviderError(f"cannot remove cgroup {directory}: {exc}", retry) from None

    def remove_parent(self) -> None:
        """Remove the parent once no VPS cgroup is left in it (another provider's may be)."""
        for top in self.layout().directories:
            with contextlib.suppress(OSError):
                (top / self.parent).rmdir()

    def leftovers(self, prefix: str) -> list[str]:
        """Cgroup paths under ``parent`` whose name starts with ``prefix`` (tests, sweeps)."""
        found: set[str] = set()
        layout = self.layout()
        for top in layout.directories:
            with contextlib.suppress(FileNotFoundError):
                for entry in (top / self.parent).iterdir():
                    if entry.is_dir() and entry.name.startswith(prefix):
                        found.add(posixpath.join(layout.prefix, self.parent, entry.name))
        return sorted(found)


def _find_layout(mountinfo: Path) -> Layout:
    try:
        found = mounts(mountinfo)
    except OSError as exc:
        raise ProviderError(f"cannot read {mountinfo}: {exc}") from None
    v1 = {c: m for m in found if m.fstype == "cgroup" for c in m.controllers}
    if "memory" in v1:
        missing = [c for c in V1_CONTROLLERS if c not in v1]
        if missing:
            raise ProviderError(f"cgroup v1 controllers {', '.join(missing)} are not mounted")
        chosen = {c: v1[c] for c in V1_CONTROLLERS}
        prefixes = {m.root for m in chosen.values()}
        if len(prefixes) != 1:
            raise ProviderError(
                f"cgroup v1 hierarchies are mounted from different roots: {prefixes}"
            )
        roots = {c: m.mountpoint for c, m in chosen.items()}
        return Layout(1, roots, prefixes.pop())
    for mount in (m for m in found if m.fstype == "cgroup2"):
        try:
            available = (mount.mountpoint / "cgroup.controllers").read_text().split()
        except OSError:
            continue
        if all(c in available for c in V2_CONTROLLERS):
            return Layout(2, dict.fromkeys(V2_CONTROLLERS, mount.mountpoint), mount.root)
    raise ProviderError("no cgroup hierarchy with the memory and cpu controllers is mounted")


def _mkdir(directory: Path) -> Path:
    with contextlib.suppress(FileExistsError):
        directory.mkdir()
    return directory


def _enable_controllers(directory: Path) -> None:
    """v2: let the children of ``directory`` use the memory and cpu controllers."""
    enabled = (directory / "cgroup.subtree_control").read_text().split()
    wanted = [c for c in V2_CONTROLLERS if c not in enabled]
    if wanted:
        (directory / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in wanted))
