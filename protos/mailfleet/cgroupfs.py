"""Where the cgroup hierarchies are mounted, read from ``/proc/self/mountinfo``.

Shared by the agent (which reads its VPS's cgroup) and the local provider (which makes
those cgroups), so both ends find the same hierarchies; neither imports the other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

MOUNTINFO = Path("/proc/self/mountinfo")
_OCTAL = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class Mount:
    """One cgroup filesystem mount: what it holds and where."""

    fstype: Literal["cgroup", "cgroup2"]
    root: str  # the part of the hierarchy mounted here
    mountpoint: Path
    controllers: frozenset[str]  # v1: from its mount options; v2: empty (read cgroup.controllers)

    def directory(self, path: str) -> Path | None:
        """Where the cgroup ``path`` (from the hierarchy's root) is, if this mount shows it."""
        if self.root == "/":
            return self.mountpoint / path.lstrip("/")
        if path == self.root or path.startswith(self.root.rstrip("/") + "/"):
            return self.mountpoint / path[len(self.root) :].lstrip("/")
        return None


def mounts(mountinfo: Path = MOUNTINFO) -> list[Mount]:
    """The cgroup mounts listed in ``mountinfo`` (proc(5) format)."""
    found: list[Mount] = []
    for line in mountinfo.read_text().splitlines():
        left, sep, right = line.partition(" - ")
        fields, extra = left.split(), right.split()
        if not sep or len(fields) < 5 or len(extra) < 3 or extra[0] not in ("cgroup", "cgroup2"):
            continue
        controllers = frozenset(extra[2].split(",")) if extra[0] == "cgroup" else frozenset()
        found.append(
            Mount(
                fstype="cgroup" if extra[0] == "cgroup" else "cgroup2",
                root=_unescape(fields[3]),
                mountpoint=Path(_unescape(fields[4])),
                controllers=controllers,
            )
        )
    return found


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes (``\\040``)."""
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)
