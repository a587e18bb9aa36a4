"""The machine's counters read from /proc and statvfs, as psutil computes them on Linux.

The sampler needs nine of psutil's readings; importing psutil would keep ≈ 0.9 MiB resident
in the daemon for good (issue 19: ≤ 40 MB RSS), so they are read here. ``agent.facts``
(on first use of collect-facts) still uses psutil. The figures match psutil 7's
(tests/agent/test_metrics.py compares them on the test machine).
"""

from __future__ import annotations

import contextlib
import os
import re
from typing import NamedTuple

PROC = "/proc"
SECTOR_BYTES = 512  # /proc/diskstats counts 512-byte sectors whatever the device's size
# /proc/stat's cpu line, in the kernel's order (fields a kernel lacks are left out).
CPU_FIELDS = (
    "user",
    "nice",
    "system",
    "idle",
    "iowait",
    "irq",
    "softirq",
    "steal",
    "guest",
    "guest_nice",
)


class Memory(NamedTuple):
    total: int
    used: int
    available: int


class Swap(NamedTuple):
    total: int
    used: int


class Partition(NamedTuple):
    device: str
    mountpoint: str
    fstype: str


class Usage(NamedTuple):
    total: int
    used: int
    free: int


class DiskIO(NamedTuple):
    read_bytes: int
    write_bytes: int


class NetIO(NamedTuple):
    bytes_recv: int
    bytes_sent: int


def cpu_times() -> dict[str, float]:
    """Seconds each CPU state has accumulated since boot, all CPUs together."""
    with open(f"{PROC}/stat") as stat:
        values = stat.readline().split()[1:]
    ticks = os.sysconf("SC_CLK_TCK")
    return {name: int(value) / ticks for name, value in zip(CPU_FIELDS, values, strict=False)}


def _meminfo() -> dict[str, int]:
    with open(f"{PROC}/meminfo") as meminfo:
        return {
            fields[0].rstrip(":"): int(fields[1]) * 1024
            for fields in (line.split() for line in meminfo)
            if len(fields) >= 2
        }


def virtual_memory() -> Memory:
    """Total, used (= total - available, as psutil 7 and ``free`` count it) and available."""
    info = _meminfo()
    total = info["MemTotal"]
    available = info.get("MemAvailable") or (  # kernels before 3.14: an estimate
        info["MemFree"] + info.get("Buffers", 0) + info.get("Cached", 0)
    )
    if available > total:
        available = info["MemFree"]
    return Memory(total, total - available, available)


def swap_memory() -> Swap:
    info = _meminfo()
    return Swap(info.get("SwapTotal", 0), info.get("SwapTotal", 0) - info.get("SwapFree", 0))


def process_count() -> int:
    return sum(1 for name in os.listdir(PROC) if name.isdigit())


_ESCAPE = re.compile(r"\\([0-7]{3})")  # the kernel writes space, tab, newline, \ as \ooo


def _unescape(field: str) -> str:
    return _ESCAPE.sub(lambda match: chr(int(match.group(1), 8)), field)


def disk_partitions() -> list[Partition]:
    """Every mount of this process's mount namespace, in mount order."""
    partitions = []
    with open(f"{PROC}/self/mounts") as mounts:
        for line in mounts:
            fields = line.split()
            if len(fields) < 3:
                continue
            device, mountpoint, fstype = (_unescape(f) for f in fields[:3])
            if device == "none":
                device = ""
            elif device == "/dev/root":  # the kernel's alias when booted without initramfs
                device = _block_device(mountpoint) or device
            partitions.append(Partition(device, mountpoint, fstype))
    return partitions


def _block_device(mountpoint: str) -> str | None:
    """The /dev name of the block device holding ``mountpoint`` (from sysfs), if known."""
    with contextlib.suppress(OSError):
        dev = os.stat(mountpoint).st_dev
        with open(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}/uevent") as uevent:
            for line in uevent:
                if line.startswith("DEVNAME="):
                    return "/dev/" + line.removeprefix("DEVNAME=").strip()
    return None


def usage(vfs: os.statvfs_result) -> Usage:
    """Space from a statvfs result: used counts root's reserve, free is what users may take."""
    total = vfs.f_blocks * vfs.f_frsize
    return Usage(total, total - vfs.f_bfree * vfs.f_frsize, vfs.f_bavail * vfs.f_frsize)


def disk_usage(mountpoint: str) -> tuple[Usage, os.statvfs_result]:
    """Space (as psutil.disk_usage) and the statvfs it came from (inodes), one call."""
    vfs = os.statvfs(mountpoint)
    return usage(vfs), vfs


def disk_io_counters() -> dict[str, DiskIO]:
    """Bytes read and written per block device (disks and partitions) since boot."""
    counters = {}
    with open(f"{PROC}/diskstats") as diskstats:
        for line in diskstats:
            fields = line.split()
            if len(fields) == 14 or len(fields) >= 18:  # major minor name reads merged sectors..
                counters[fields[2]] = DiskIO(
                    int(fields[5]) * SECTOR_BYTES, int(fields[9]) * SECTOR_BYTES
                )
            elif len(fields) == 7:  # a partition on old kernels: reads sectors writes sectors
                counters[fields[2]] = DiskIO(
                    int(fields[4]) * SECTOR_BYTES, int(fields[6]) * SECTOR_BYTES
                )
    return counters


def net_io_counters() -> dict[str, NetIO]:
    """Bytes received and sent per interface of this network namespace since it appeared."""
    counters = {}
    with open(f"{PROC}/net/dev") as dev:
        for line in dev:
            name, colon, rest = line.partition(":")
            fields = rest.split()
            if colon and len(fields) >= 9:
                counters[name.strip()] = NetIO(int(fields[0]), int(fields[8]))
    return counters
