"""Host facts for the ``collect-facts`` command: what the control plane knows a VPS by.

Everything returned is plain JSON (str, int, None, lists, dicts) so it can go on the wire
as is. Facts that a host may not have (no /etc/os-release, an unreadable /proc/cpuinfo, a
mount we may not stat) come back as None instead of failing the whole command.
"""

from __future__ import annotations

import math
import os
import platform
import socket
from pathlib import Path

import psutil  # type: ignore[import-untyped, unused-ignore]

from agent.cgroup import CgroupError, VpsCgroup
from agent.errors import CommandError
from agent.metrics import cgroup_cpus, cgroup_memory, is_real_filesystem

CPUINFO = Path("/proc/cpuinfo")
# /proc/cpuinfo names the CPU differently per architecture (x86, older ARM, MIPS/POWER).
_CPU_MODEL_KEYS = ("model name", "Processor", "cpu model", "cpu")


def collect_facts(agent_version: str, vps_cgroup: str | None = None) -> dict[str, object]:
    """Describe this host; every value is JSON-serialisable.

    With ``vps_cgroup`` the memory and CPU count are the VPS cgroup's (see ``agent.cgroup``)
    and ``cgroup`` (only then present) says which; if it cannot be read the command fails
    rather than report the host's figures as the VPS's.
    """
    cpu = _cpu()
    memory_total = int(psutil.virtual_memory().total)
    extra: dict[str, object] = {}
    if vps_cgroup is not None:
        try:
            reading = VpsCgroup(vps_cgroup).read()
        except CgroupError as exc:
            raise CommandError(str(exc)) from None
        memory_total = cgroup_memory(reading, memory_total)[0]
        cpus = cgroup_cpus(reading, os.cpu_count() or 1)
        cpu["logical_count"] = max(1, math.ceil(cpus))
        extra["cgroup"] = {"path": vps_cgroup, "cpus": cpus, "memory_limit_bytes": memory_total}
    return {
        "hostname": socket.gethostname(),
        "os": _os_release(),
        "kernel": _kernel(),
        "cpu": cpu,
        "memory_total_bytes": memory_total,
        "swap_total_bytes": int(psutil.swap_memory().total),
        "disks": _disks(),
        "addresses": _addresses(),
        "boot_time": int(psutil.boot_time()),
        "python_version": platform.python_version(),
        "agent_version": agent_version,
        "compose": _compose(),
        **extra,
    }


def _compose() -> dict[str, str] | None:
    """Which Compose drives MailU here (found once per agent), or None without one."""
    from agent.mailu.compose import detect_compose  # the MailU module only when asked

    found = detect_compose(timeout=10)
    return None if found is None else {"command": " ".join(found[0]), "version": found[1]}


def _os_release() -> dict[str, str | None]:
    try:
        release = platform.freedesktop_os_release()
    except OSError:
        release = {}
    return {
        "id": release.get("ID"),
        "version_id": release.get("VERSION_ID"),
        "pretty_name": release.get("PRETTY_NAME"),
    }


def _kernel() -> dict[str, str]:
    uname = os.uname()
    return {"release": uname.release, "version": uname.version, "machine": uname.machine}


def _cpu() -> dict[str, int | str | None]:
    physical = psutil.cpu_count(logical=False)
    return {
        "logical_count": os.cpu_count(),
        "physical_count": None if physical is None else int(physical),
        "model": _cpu_model(),
    }


def _cpu_model() -> str | None:
    try:
        text = CPUINFO.read_text(errors="replace")
    except OSError:
        return None
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    return next((fields[k] for k in _CPU_MODEL_KEYS if fields.get(k)), None)


def _disks() -> list[dict[str, str | int | None]]:
    """Mounted real filesystems, each mountpoint once (bind mounts repeat them)."""
    disks: list[dict[str, str | int | None]] = []
    seen: set[str] = set()
    for part in psutil.disk_partitions(all=False):
        fstype = str(part.fstype)
        mountpoint = str(part.mountpoint)
        if not is_real_filesystem(fstype, mountpoint) or mountpoint in seen:
            continue
        seen.add(mountpoint)
        try:
            total: int | None = int(psutil.disk_usage(mountpoint).total)
        except OSError:  # PermissionError included: an unreadable mount is still a mount
            total = None
        disks.append(
            {
                "mountpoint": mountpoint,
                "device": str(part.device),
                "fstype": fstype,
                "total_bytes": total,
            }
        )
    return disks


def _addresses() -> dict[str, list[dict[str, str | None]]]:
    families = {socket.AF_INET: "ipv4", socket.AF_INET6: "ipv6", psutil.AF_LINK: "mac"}
    addresses: dict[str, list[dict[str, str | None]]] = {}
    for interface, entries in psutil.net_if_addrs().items():
        addresses[str(interface)] = [
            {
                "family": families[entry.family],
                "address": str(entry.address),
                "netmask": None if entry.netmask is None else str(entry.netmask),
            }
            for entry in entries
            if entry.family in families
        ]
    return addresses
