"""Resource sampling for the agent's metric stream (called every 15 s, never sleeps)."""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent import procfs
from agent.cgroup import CgroupError, CgroupReading, VpsCgroup

log = logging.getLogger(__name__)

# Filesystems that hold no user data: kernel interfaces, memory-backed, container layers and
# read-only images. Their "usage" is noise (or a duplicate of the disk underneath).
PSEUDO_FSTYPES = frozenset(
    {
        "autofs",
        "aufs",
        "binfmt_misc",
        "bpf",
        "configfs",
        "debugfs",
        "devpts",
        "devtmpfs",
        "efivarfs",
        "erofs",
        "fuse.gvfsd-fuse",
        "fuse.lxcfs",
        "fuse.portal",
        "fusectl",
        "hugetlbfs",
        "iso9660",
        "mqueue",
        "nfsd",
        "nsfs",
        "overlay",
        "proc",
        "pstore",
        "ramfs",
        "rootfs",
        "rpc_pipefs",
        "securityfs",
        "selinuxfs",
        "squashfs",
        "sysfs",
        "tmpfs",
        "tracefs",
    }
)
# Kernel trees and container runtimes' private mounts, whatever their type.
PSEUDO_MOUNT_PREFIXES = (
    "/proc/",
    "/sys/",
    "/dev/",
    "/run/credentials/",
    "/var/lib/docker/",
    "/var/lib/containers/",
)


@dataclass(frozen=True, slots=True)
class FilesystemUsage:
    """Space and inodes on one mounted filesystem.

    ``inodes_total`` is 0 where the filesystem has no fixed inode table (btrfs, many FUSE
    filesystems report f_files = 0): there is nothing to run out of.
    """

    mountpoint: str
    device: str
    fstype: str
    total_bytes: int
    used_bytes: int
    free_bytes: int
    inodes_total: int = 0
    inodes_used: int = 0


@dataclass(frozen=True, slots=True)
class MetricSample:
    """One reading of the machine; disk and network figures are cumulative byte counters."""

    timestamp: float
    cpu_percent: float
    load1: float
    load5: float
    load15: float
    memory_total_bytes: int
    memory_used_bytes: int
    memory_available_bytes: int
    swap_total_bytes: int
    swap_used_bytes: int
    filesystems: tuple[FilesystemUsage, ...]
    disk_read_bytes: int
    disk_write_bytes: int
    net_rx_bytes: int
    net_tx_bytes: int
    process_count: int
    # Bytes per second since the sampler's previous sample (None on its first).
    net_rx_bytes_per_second: float | None = None
    net_tx_bytes_per_second: float | None = None
    disk_read_bytes_per_second: float | None = None
    disk_write_bytes_per_second: float | None = None
    # Messages in MailU's Postfix queue (None where that queue directory does not exist).
    mail_queue_messages: int | None = None


class Sampler:
    """Takes ``MetricSample``s; CPU use is measured over the time since the previous call.

    With ``vps_cgroup`` (agent.toml) memory and CPU are the VPS cgroup's (``agent.cgroup``):
    total = its limit (never more than the machine has), used = its working set, CPU % =
    its CPU time over its CPU quota. While that cgroup cannot be read the machine's figures
    are reported, with a warning in the log.
    """

    def __init__(
        self,
        statfs_timeout: float = 1.0,
        vps_cgroup: str | None = None,
        mail_queue_dir: Path | None = None,
    ) -> None:
        # Our own CPU baseline (as psutil.cpu_percent(interval=None) computes it, but that
        # keeps one per calling thread, and sampling runs on a thread pool).
        self._cpu_times: dict[str, float] = procfs.cpu_times()
        self._vps_cgroup = vps_cgroup
        self._cgroup: VpsCgroup | None = None
        self._cgroup_cpu: tuple[float, float] | None = None  # (monotonic, cpu seconds)
        self._cgroup_problem: str | None = None
        self._statfs_timeout = statfs_timeout
        # statvfs() on a dead NFS server blocks in the kernel; such a mount is skipped until
        # the call that hung finally returns, instead of stalling every sample.
        self._stuck: dict[str, threading.Thread] = {}
        self._disk_read = _MonotonicSum()
        self._disk_write = _MonotonicSum()
        self._net_rx = _MonotonicSum()
        self._net_tx = _MonotonicSum()
        self._mail_queue_dir = mail_queue_dir
        # (monotonic time, net rx, net tx, disk read, disk write) of the previous sample.
        self._previous: tuple[float, int, int, int, int] | None = None

    def sample(self) -> MetricSample:
        """Read everything once; disk or network counters the host hides read as zero."""
        timestamp = time.time()
        cpu = self._cpu_percent()
        load1, load5, load15 = os.getloadavg()
        memory = procfs.virtual_memory()
        total, used, available = int(memory.total), int(memory.used), int(memory.available)
        reading = self._cgroup_reading()
        if reading is not None:
            total, used, available = cgroup_memory(reading, total)
            cpu = self._cgroup_cpu_percent(reading)
        swap = procfs.swap_memory()
        disks = _disk_counters()
        nics = _net_counters()
        counters = (
            self._net_rx.update({k: v.bytes_recv for k, v in nics.items()}),
            self._net_tx.update({k: v.bytes_sent for k, v in nics.items()}),
            self._disk_read.update({k: v.read_bytes for k, v in disks.items()}),
            self._disk_write.update({k: v.write_bytes for k, v in disks.items()}),
        )
        rates = self._rates(time.monotonic(), counters)
        return MetricSample(
            timestamp=timestamp,
            cpu_percent=cpu,
            load1=float(load1),
            load5=float(load5),
            load15=float(load15),
            memory_total_bytes=total,
            memory_used_bytes=used,
            memory_available_bytes=available,
            swap_total_bytes=int(swap.total),
            swap_used_bytes=int(swap.used),
            filesystems=self._filesystems(),
            net_rx_bytes=counters[0],
            net_tx_bytes=counters[1],
            disk_read_bytes=counters[2],
            disk_write_bytes=counters[3],
            process_count=procfs.process_count(),
            net_rx_bytes_per_second=rates[0],
            net_tx_bytes_per_second=rates[1],
            disk_read_bytes_per_second=rates[2],
            disk_write_bytes_per_second=rates[3],
            mail_queue_messages=(
                None if self._mail_queue_dir is None else mail_queue_length(self._mail_queue_dir)
            ),
        )

    def _rates(
        self, now: float, counters: tuple[int, int, int, int]
    ) -> tuple[float | None, float | None, float | None, float | None]:
        """Bytes per second of each counter since the previous sample (None on the first).

        The sums never fall (``_MonotonicSum``), so a rate is never negative.
        """
        previous, self._previous = self._previous, (now, *counters)
        if previous is None or now <= previous[0]:
            return None, None, None, None
        elapsed = now - previous[0]
        rx, tx, read, write = (
            max(0, c - p) / elapsed for c, p in zip(counters, previous[1:], strict=True)
        )
        return rx, tx, read, write

    def _cpu_percent(self) -> float:
        """System-wide busy share since the last call, as psutil computes it (0..100)."""
        now = procfs.cpu_times()
        delta = {k: max(0.0, v - self._cpu_times.get(k, 0.0)) for k, v in now.items()}
        self._cpu_times = now
        # Guest time is already inside user/nice; iowait is idle time on Linux.
        total = sum(delta.values()) - delta.get("guest", 0.0) - delta.get("guest_nice", 0.0)
        busy = total - delta["idle"] - delta.get("iowait", 0.0)
        if total <= 0:
            return 0.0
        return min(100.0, max(0.0, 100.0 * busy / total))

    def _cgroup_reading(self) -> CgroupReading | None:
        """The VPS cgroup now, or None (none configured, or unreadable: logged once)."""
        if self._vps_cgroup is None:
            return None
        try:
            if self._cgroup is None:
                self._cgroup = VpsCgroup(self._vps_cgroup)
            reading = self._cgroup.read()
        except CgroupError as exc:
            self._cgroup = self._cgroup_cpu = None  # find it again next time
            if str(exc) != self._cgroup_problem:
                log.warning("%s; reporting the machine's memory and CPU meanwhile", exc)
            self._cgroup_problem = str(exc)
            return None
        self._cgroup_problem = None
        return reading

    def _cgroup_cpu_percent(self, reading: CgroupReading) -> float:
        """The cgroup's CPU time since the last sample over what its quota allows (0..100)."""
        now = time.monotonic()
        previous, self._cgroup_cpu = self._cgroup_cpu, (now, reading.cpu_seconds)
        if previous is None or now <= previous[0]:
            return 0.0
        cpus = cgroup_cpus(reading, os.cpu_count() or 1)
        busy = max(0.0, reading.cpu_seconds - previous[1])
        return min(100.0, 100.0 * busy / ((now - previous[0]) * cpus))

    def _filesystems(self) -> tuple[FilesystemUsage, ...]:
        """Real filesystems, each device once (at its shortest mountpoint)."""
        visible: dict[str, Any] = {}
        for part in procfs.disk_partitions():
            visible[part.mountpoint] = part  # a later mount on the same path hides the earlier
        candidates = sorted(
            (p for p in visible.values() if is_real_filesystem(p.fstype, p.mountpoint)),
            key=lambda p: (len(p.mountpoint), p.mountpoint),
        )
        # Each device's mountpoints, shortest first: bind mounts and btrfs subvolumes share
        # one space, counted once, at the first mountpoint that answers.
        by_device: dict[str, list[Any]] = {}
        for part in candidates:
            by_device.setdefault(part.device, []).append(part)
        found: dict[str, tuple[Any, tuple[Any, os.statvfs_result | None]]] = {}
        deadline = time.monotonic() + self._statfs_timeout
        for round_ in itertools.count():
            asking = {
                parts[round_].mountpoint: parts[round_]
                for device, parts in by_device.items()
                if device not in found and round_ < len(parts)
            }
            if not asking or time.monotonic() >= deadline:
                break
            for mountpoint, usage in self._disk_usages(list(asking), deadline).items():
                found[asking[mountpoint].device] = (asking[mountpoint], usage)
        result = [
            FilesystemUsage(
                mountpoint=part.mountpoint,
                device=part.device,
                fstype=part.fstype,
                total_bytes=int(usage.total),
                used_bytes=int(usage.used),
                free_bytes=int(usage.free),
                inodes_total=int(vfs.f_files) if vfs else 0,
                inodes_used=max(0, int(vfs.f_files) - int(vfs.f_ffree)) if vfs else 0,
            )
            for part, (usage, vfs) in found.values()
        ]
        return tuple(sorted(result, key=lambda fs: fs.mountpoint))

    def _disk_usages(
        self, mountpoints: list[str], deadline: float
    ) -> dict[str, tuple[Any, os.statvfs_result | None]]:
        """``procfs.disk_usage`` (space, and the statvfs result for inodes) of each mountpoint,
        read in parallel until ``deadline``, so hanging mounts cost a sample one timeout in
        all; a mountpoint whose space cannot be read or whose call hangs is left out."""
        for mountpoint, hung in list(self._stuck.items()):
            if not hung.is_alive():
                del self._stuck[mountpoint]
        result: dict[str, tuple[Any, os.statvfs_result | None]] = {}

        def statfs(mountpoint: str) -> None:
            # Unmounted meanwhile, permission denied, stale handle: skipped, not fatal.
            with contextlib.suppress(OSError):
                result[mountpoint] = procfs.disk_usage(mountpoint)

        threads = {
            mountpoint: threading.Thread(
                target=statfs, args=(mountpoint,), name=f"statfs {mountpoint}", daemon=True
            )
            for mountpoint in mountpoints
            if mountpoint not in self._stuck
        }
        for thread in threads.values():
            thread.start()
        for mountpoint, thread in threads.items():
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                self._stuck[mountpoint] = thread
        return {m: result[m] for m in threads if m not in self._stuck and m in result}


# Postfix's queues that hold messages (each message one file, deferred/ and active/ hashed
# into subdirectories); bounce/, defer/ and trace/ hold per-message logs, not messages.
MAIL_QUEUES = ("incoming", "active", "deferred", "hold", "maildrop")
MAIL_QUEUE_MAX_ENTRIES = 200_000  # a sample's walk stops there (a lower bound beyond)


def mail_queue_length(queue_dir: Path, max_entries: int = MAIL_QUEUE_MAX_ENTRIES) -> int | None:
    """Messages queued in a Postfix queue directory; None when the directory is missing.

    Counts files, as ``find | wc -l`` would, rather than running ``postqueue -p`` inside the
    smtp container: no docker call on every sample, and it works while Postfix is down.
    The walk looks at no more than ``max_entries`` entries, so a flooded queue cannot stall
    the sampler.
    """
    if not queue_dir.is_dir():
        return None
    count, seen = 0, 0
    stack = [queue_dir / name for name in MAIL_QUEUES]
    while stack and seen < max_entries:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    seen += 1
                    if seen > max_entries:
                        break
                    with contextlib.suppress(OSError):  # picked up/removed meanwhile
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(Path(entry.path))
                        elif entry.is_file(follow_symlinks=False):
                            count += 1
        except OSError:  # a queue not created yet, or not readable
            continue
    return count


class _MonotonicSum:
    """Sum of per-device counters that never falls when a device goes away or resets.

    Docker's veth pairs come and go with containers; without this the total would drop.
    """

    def __init__(self) -> None:
        self._last: dict[str, int] = {}
        self._retired = 0

    def update(self, values: Mapping[str, int]) -> int:
        current = {name: int(value) for name, value in values.items()}
        for name, last in self._last.items():
            now = current.get(name)
            if now is None or now < last:  # gone, or restarted from zero (wrap, re-created)
                self._retired += last
        self._last = current
        return self._retired + sum(current.values())


def cgroup_memory(reading: CgroupReading, machine_total: int) -> tuple[int, int, int]:
    """(total, used, available) of a VPS cgroup: its limit, capped by the machine's memory."""
    total = machine_total
    if reading.memory_limit_bytes is not None:
        total = min(total, reading.memory_limit_bytes)
    used = min(reading.memory_used_bytes, total)
    return total, used, total - used


def cgroup_cpus(reading: CgroupReading, machine_cpus: int) -> float:
    """The CPUs a VPS cgroup may use: its quota, capped by the machine's count."""
    if reading.cpu_limit is None:
        return float(machine_cpus)
    return min(float(machine_cpus), reading.cpu_limit)


def is_real_filesystem(fstype: str, mountpoint: str) -> bool:
    """Holds data of its own (not a kernel view, RAM, container layer or image)."""
    if not fstype or fstype in PSEUDO_FSTYPES or fstype.startswith("cgroup"):
        return False
    return not mountpoint.startswith(PSEUDO_MOUNT_PREFIXES)


def _disk_counters() -> dict[str, Any]:
    """Per whole disk; physical ones only when the kernel tells them apart.

    Partitions, dm-crypt/LVM, md and loop devices repeat I/O a physical disk already counts,
    and zram is memory.
    """
    try:
        disks: dict[str, Any] = procfs.disk_io_counters() or {}
    except (OSError, NotImplementedError):
        return {}
    whole = {n: c for n, c in disks.items() if os.path.exists(_sys_path("/sys/block", n))}
    if not whole:  # no /sys: every device /proc/diskstats lists
        return disks
    return _physical_first(whole, "/sys/block")


def _net_counters() -> dict[str, Any]:
    """Per NIC except loopback; physical ones only when there are any.

    Traffic of a container crosses its veth, the bridge and then eth0, so summing virtual
    interfaces (veth, bridges, ifb, tunnels) would count it several times.
    """
    try:
        nics: dict[str, Any] = procfs.net_io_counters() or {}
    except OSError:
        return {}
    return _physical_first({n: c for n, c in nics.items() if n != "lo"}, "/sys/class/net")


def _physical_first(devices: dict[str, Any], sys_dir: str) -> dict[str, Any]:
    physical = {n: c for n, c in devices.items() if not _is_virtual(sys_dir, n)}
    return physical or devices  # e.g. inside a container, where eth0 is itself a veth


def _is_virtual(sys_dir: str, name: str) -> bool:
    return "/devices/virtual/" in os.path.realpath(_sys_path(sys_dir, name))


def _sys_path(sys_dir: str, name: str) -> str:
    return f"{sys_dir}/{name.replace('/', '!')}"
