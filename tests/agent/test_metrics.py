"""The sampler against this machine; its /proc readings (agent.procfs) are replaced only for
what cannot happen here, and checked against psutil's."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil
import pytest

from agent import procfs
from agent.cgroup import CgroupError, CgroupReading, VpsCgroup
from agent.errors import CommandError
from agent.facts import collect_facts
from agent.metrics import (
    PSEUDO_FSTYPES,
    MetricSample,
    Sampler,
    cgroup_cpus,
    cgroup_memory,
    mail_queue_length,
)
from tests.support.netns import ip, kill_namespace, netns_unavailable, pick_subnet


def burn_cpu(seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pass


def test_a_sample_is_plausible() -> None:
    sample = Sampler().sample()

    assert abs(sample.timestamp - time.time()) < 60
    assert 0.0 <= sample.cpu_percent <= 100.0 * (psutil.cpu_count() or 1)
    assert min(sample.load1, sample.load5, sample.load15) >= 0.0
    assert sample.memory_total_bytes > 0
    assert 0 <= sample.memory_used_bytes <= sample.memory_total_bytes
    assert 0 <= sample.memory_available_bytes <= sample.memory_total_bytes
    assert 0 <= sample.swap_used_bytes <= sample.swap_total_bytes or sample.swap_total_bytes == 0
    assert sample.process_count >= 1


def test_proc_readings_are_psutils() -> None:
    """What the sampler reads from /proc is what psutil (agent.facts') reports here."""
    mib = 2**20
    memory, expected = procfs.virtual_memory(), psutil.virtual_memory()
    assert memory.total == expected.total
    assert abs(memory.available - expected.available) < 64 * mib  # read moments apart
    assert abs(memory.used - expected.used) < 64 * mib
    assert procfs.swap_memory().total == psutil.swap_memory().total
    assert abs(procfs.process_count() - len(psutil.pids())) < 50

    ours, theirs = procfs.cpu_times(), psutil.cpu_times()._asdict()
    assert set(ours) == set(theirs)
    assert all(0 <= ours[k] - theirs[k] < 5 for k in ours)  # ours read later, never less

    assert procfs.disk_partitions() == [
        (p.device, p.mountpoint, p.fstype) for p in psutil.disk_partitions(all=True)
    ]
    usage, vfs = procfs.disk_usage("/")
    assert (usage.total, vfs.f_files) == (psutil.disk_usage("/").total, os.statvfs("/").f_files)
    assert abs(usage.used - psutil.disk_usage("/").used) < 64 * mib

    disks = psutil.disk_io_counters(perdisk=True, nowrap=False)
    assert set(procfs.disk_io_counters()) == set(disks)
    nics, counted = procfs.net_io_counters(), psutil.net_io_counters(pernic=True, nowrap=False)
    assert set(nics) == set(counted)
    assert all(0 <= counted[n].bytes_recv - nics[n].bytes_recv < mib for n in nics)


def test_rates_start_unknown_and_are_never_negative(tmp_path: Path) -> None:
    """The first sample has no rates (nothing to compare with); later ones are ≥ 0; the mail
    queue is None without a queue directory."""
    sampler = Sampler(mail_queue_dir=tmp_path / "no-mailu")
    first, second = sampler.sample(), sampler.sample()
    names = ("net_rx", "net_tx", "disk_read", "disk_write")
    assert [getattr(first, f"{n}_bytes_per_second") for n in names] == [None] * 4
    assert all(getattr(second, f"{n}_bytes_per_second") >= 0.0 for n in names)
    assert (first.mail_queue_messages, Sampler().sample().mail_queue_messages) == (None, None)


def test_the_mail_queue_counts_queued_messages_only(tmp_path: Path) -> None:
    """Postfix's layout (MailU's /queue): messages in incoming/active/deferred/hold/maildrop,
    deferred/ and active/ hashed into subdirectories; per-message logs (defer/, bounce/) and
    Postfix's own files are not messages."""
    queue = tmp_path / "mailqueue"
    files = {
        "incoming/4AbC1": 1, "active/A/4AbC2": 1, "deferred/B/4AbC3": 1, "deferred/C/4AbC4": 1,
        "hold/4AbC5": 1, "maildrop/4AbC6": 1, "defer/B/4AbC3": 0, "bounce/4AbC7": 0,
        "pid/master.pid": 0, "public/pickup": 0,
    }  # fmt: skip
    for name in files:
        (queue / name).parent.mkdir(parents=True, exist_ok=True)
        (queue / name).write_text("x")
    (queue / "corrupt").mkdir()
    sampler = Sampler(mail_queue_dir=queue)
    assert sampler.sample().mail_queue_messages == sum(files.values()) == 6
    (queue / "deferred/B/4AbC3").unlink()
    assert sampler.sample().mail_queue_messages == 5
    # Bounded: a flooded queue costs at most max_entries directory entries per sample.
    assert mail_queue_length(queue, max_entries=3) == 2  # maildrop, hold, then stops: a floor
    assert mail_queue_length(tmp_path / "missing") is None


def test_filesystems_are_real_distinct_and_include_the_root() -> None:
    filesystems = Sampler().sample().filesystems

    assert filesystems
    root_device = os.stat("/").st_dev
    assert any(os.stat(fs.mountpoint).st_dev == root_device for fs in filesystems)
    assert len({fs.device for fs in filesystems}) == len(filesystems)
    assert len({fs.mountpoint for fs in filesystems}) == len(filesystems)
    for fs in filesystems:
        assert fs.fstype not in PSEUDO_FSTYPES
        assert not fs.fstype.startswith("cgroup")
        assert fs.total_bytes > 0
        assert 0 <= fs.used_bytes <= fs.total_bytes
        assert 0 <= fs.free_bytes <= fs.total_bytes
        assert 0 <= fs.inodes_used <= fs.inodes_total
    root = next(fs for fs in filesystems if os.stat(fs.mountpoint).st_dev == root_device)
    assert root.inodes_total == os.statvfs(root.mountpoint).f_files


# Runs in a private mount namespace: a fresh ext4 image with a known inode table, mounted
# by loop, sampled before and after making files on it.
INODES = """
import json, os, sys
from agent.metrics import Sampler
mnt, count = sys.argv[1], int(sys.argv[2])
def mine():
    return next(fs for fs in Sampler().sample().filesystems if fs.mountpoint == mnt)
before = mine()
for n in range(count):
    open(os.path.join(mnt, f"f{n}"), "w").close()
after = mine()
vfs = os.statvfs(mnt)
print(json.dumps({"total": after.inodes_total, "before": before.inodes_used,
                  "after": after.inodes_used, "f_files": vfs.f_files,
                  "f_used": vfs.f_files - vfs.f_ffree}))
"""


def test_inodes_are_counted_on_a_real_filesystem(tmp_path: Path) -> None:
    if os.geteuid() != 0 or not shutil.which("mkfs.ext4") or not shutil.which("unshare"):
        pytest.skip("needs root, mkfs.ext4 and unshare to loop-mount an image")
    image, mnt = tmp_path / "fs.img", tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["truncate", "-s", "16M", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-N", "1024", str(image)], check=True)
    script = f'mount -o loop "$1" "$2" && exec {sys.executable} -c "$3" "$2" 100'
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
         str(image), str(mnt), INODES],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    counted = json.loads(done.stdout)
    assert counted["total"] == counted["f_files"] >= 1024
    assert counted["after"] == counted["f_used"]
    assert counted["after"] - counted["before"] == 100


def test_disk_counters_grow_by_the_bytes_written_and_read(tmp_path: Path) -> None:
    size = 8 << 20
    sampler = Sampler()
    first = sampler.sample()
    data = tmp_path / "data"
    fd = os.open(data, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.write(fd, os.urandom(size))
        os.fsync(fd)  # on the disk now, not only in the page cache
    finally:
        os.close(fd)
    written = sampler.sample()
    fd = os.open(data, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # so reading it goes to the disk
        while os.read(fd, 1 << 20):
            pass
    finally:
        os.close(fd)
    read = sampler.sample()

    assert written.timestamp > first.timestamp
    assert written.disk_write_bytes - first.disk_write_bytes >= size
    assert read.disk_read_bytes - written.disk_read_bytes >= size


# Runs inside a network namespace whose only NIC is one end of a veth pair: it sends
# ``size`` bytes to an echo server on the other end and reads them back, sampling around it.
TRAFFIC = """
import json, socket, sys, time
from agent.metrics import Sampler
peer, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
sampler = Sampler()
outer = time.monotonic()
before = sampler.sample()
inner = time.monotonic()
with socket.create_connection((peer, port), timeout=10) as conn:
    conn.sendall(b"m" * size)
    conn.shutdown(socket.SHUT_WR)
    got = 0
    while chunk := conn.recv(1 << 16):
        got += len(chunk)
inner = time.monotonic() - inner
after = sampler.sample()
outer = time.monotonic() - outer
print(json.dumps({"echoed": got, "tx": after.net_tx_bytes - before.net_tx_bytes,
                  "rx": after.net_rx_bytes - before.net_rx_bytes,
                  "first_rates": [before.net_tx_bytes_per_second, before.net_rx_bytes_per_second],
                  "rates": [after.net_tx_bytes_per_second, after.net_rx_bytes_per_second],
                  "inner": inner, "outer": outer}))
"""
# Reads everything before answering with as many bytes: an echo that answers while the
# sender still sends can fill both directions' buffers at once (the sender reads only after
# sending), and under load that ended in a reset.
ECHO = """
import socket, sys
with socket.create_server((sys.argv[1], 0)) as server:
    print(server.getsockname()[1], flush=True)
    conn, _ = server.accept()
    with conn:
        received = 0
        while chunk := conn.recv(1 << 16):
            received += len(chunk)
        conn.sendall(b"e" * received)
"""


@pytest.fixture
def veth_namespaces() -> Iterator[tuple[str, str, str]]:
    """Two namespaces joined by a veth pair: (sender's, echo's, echo's address)."""
    reason = netns_unavailable()
    if reason is not None:
        pytest.skip(reason)
    tag = secrets.token_hex(3)
    a, b = f"mfm{tag}a", f"mfm{tag}b"
    hosts = list(pick_subnet().hosts())
    made: list[str] = []
    try:
        for ns in (a, b):
            ip("netns", "add", ns)
            made.append(ns)
        ip("link", "add", f"{a}0", "type", "veth", "peer", "name", f"{b}0")
        for ns, host in ((a, hosts[0]), (b, hosts[1])):
            ip("link", "set", f"{ns}0", "netns", ns)
            ip("-n", ns, "addr", "add", f"{host}/24", "dev", f"{ns}0")
            ip("-n", ns, "link", "set", f"{ns}0", "up")
        yield a, b, str(hosts[1])
    finally:
        for ns in made:
            kill_namespace(ns)


def test_network_counters_grow_by_the_bytes_sent_and_received(
    veth_namespaces: tuple[str, str, str],
) -> None:
    sender, echo_ns, echo_address = veth_namespaces
    size = 4 << 20
    echo = subprocess.Popen(
        ["ip", "netns", "exec", echo_ns, sys.executable, "-c", ECHO, echo_address],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert echo.stdout is not None
        port = echo.stdout.readline().strip()
        args = [echo_address, port, str(size)]
        traffic = subprocess.run(
            ["ip", "netns", "exec", sender, sys.executable, "-c", TRAFFIC, *args],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=Path(__file__).resolve().parents[2],
            check=True,
        )
    finally:
        echo.kill()
        echo.wait()
    counted = json.loads(traffic.stdout)
    assert counted["echoed"] == size
    # the payload each way, plus TCP/IP headers and ACKs (a few per cent), counted once
    assert size <= counted["tx"] < size * 1.2, counted
    assert size <= counted["rx"] < size * 1.2, counted
    # Rates: none on the first sample; then the bytes over the time between the samples,
    # which lies between the traffic's own duration and the whole run's.
    assert counted["first_rates"] == [None, None]
    for rate, total in zip(counted["rates"], (counted["tx"], counted["rx"]), strict=True):
        assert total / counted["outer"] <= rate <= total / counted["inner"], counted


def test_cpu_use_is_measured_between_samples_without_sleeping() -> None:
    sampler = Sampler()
    sampler.sample()
    burn_cpu(0.5)
    started = time.monotonic()
    busy = sampler.sample()

    assert busy.cpu_percent > 0.0
    assert time.monotonic() - started < 0.5  # the sample itself does not wait for a window


def test_cpu_use_survives_sampling_from_another_thread_and_other_callers() -> None:
    sampler = Sampler()
    burn_cpu(0.5)
    psutil.cpu_percent(interval=None)  # someone else resetting psutil's baseline
    Sampler().sample()  # or a second sampler
    with ThreadPoolExecutor(max_workers=1) as pool:  # as asyncio.to_thread would run it
        sample: MetricSample = pool.submit(sampler.sample).result()

    assert sample.cpu_percent > 0.0


def fake_partitions(*rows: tuple[str, str, str]) -> Callable[..., list[Any]]:
    parts = [SimpleNamespace(device=d, mountpoint=m, fstype=t, opts="rw") for d, m, t in rows]
    return lambda: parts


def test_pseudo_hidden_and_duplicate_mounts_are_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        procfs,
        "disk_partitions",
        fake_partitions(
            ("/dev/vda", "/", "ext4"),
            ("proc", "/proc", "proc"),
            ("tmpfs", "/run", "tmpfs"),
            ("cgroup2", "/sys/fs/cgroup", "cgroup2"),
            ("overlay", "/var/lib/docker/overlay2/x/merged", "overlay"),
            ("/dev/loop0", "/snap/core/1", "squashfs"),
            ("/dev/vda", "/srv/bind", "ext4"),  # bind mount of /
            ("/dev/vdb", "/data", "xfs"),
            ("/dev/vdc", "/hidden", "ext4"),
            ("tmpfs", "/hidden", "tmpfs"),  # mounted over /hidden
            ("/dev/vdd", "/a", "ext4"),  # refuses statfs, but the device is also at /bb
            ("/dev/vdd", "/bb", "ext4"),
            ("/dev/vde", "/gone", "ext4"),
        ),
    )
    asked: list[str] = []

    def disk_usage(path: str) -> Any:
        asked.append(path)
        if path == "/a":
            raise PermissionError(path)
        if path == "/gone":
            raise FileNotFoundError(path)
        return SimpleNamespace(total=100, used=40, free=60), None

    monkeypatch.setattr(procfs, "disk_usage", disk_usage)

    filesystems = Sampler().sample().filesystems

    assert [(fs.mountpoint, fs.device) for fs in filesystems] == [
        ("/", "/dev/vda"),
        ("/bb", "/dev/vdd"),
        ("/data", "/dev/vdb"),
    ]
    assert filesystems[0].total_bytes == 100
    assert sorted(asked) == ["/", "/a", "/bb", "/data", "/gone"]


@pytest.fixture
def hanging_root(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """statvfs('/') blocks like a dead NFS server until the event is set."""
    release = threading.Event()
    real = procfs.disk_usage
    calls: list[str] = []

    def disk_usage(path: str) -> Any:
        calls.append(path)
        if path == "/":
            release.wait(30)
        return real(path)

    monkeypatch.setattr(procfs, "disk_partitions", fake_partitions(("/dev/vda", "/", "ext4")))
    monkeypatch.setattr(procfs, "disk_usage", disk_usage)
    try:
        yield release
    finally:
        release.set()


def test_a_hanging_filesystem_is_skipped_until_it_answers(hanging_root: threading.Event) -> None:
    sampler = Sampler(statfs_timeout=0.2)

    started = time.monotonic()
    assert sampler.sample().filesystems == ()
    assert time.monotonic() - started < 5
    started = time.monotonic()
    assert sampler.sample().filesystems == ()  # not asked again while the call still hangs
    assert time.monotonic() - started < 0.2

    hanging_root.set()
    deadline = time.monotonic() + 5
    while not (filesystems := sampler.sample().filesystems) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [fs.mountpoint for fs in filesystems] == ["/"]


def test_hanging_filesystems_cost_a_sample_one_timeout_in_all(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    release = threading.Event()
    hanging = ["/a", "/b", "/c", "/d"]

    def disk_usage(path: str) -> Any:
        release.wait(30)
        return SimpleNamespace(total=1, used=0, free=1), None

    monkeypatch.setattr(
        procfs,
        "disk_partitions",
        fake_partitions(*((f"/dev/vd{m[1]}", m, "ext4") for m in hanging)),
    )
    monkeypatch.setattr(procfs, "disk_usage", disk_usage)
    try:
        sampler = Sampler(statfs_timeout=0.4)
        started = time.monotonic()
        assert sampler.sample().filesystems == ()
        # Read one after another, four hanging mounts would take four timeouts (1.6 s).
        assert time.monotonic() - started < 1.2
    finally:
        release.set()


def nics(**counters: int) -> dict[str, Any]:
    return {name: SimpleNamespace(bytes_recv=n, bytes_sent=2 * n) for name, n in counters.items()}


def test_network_excludes_loopback_and_survives_interfaces_going_away(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    readings = iter(
        [
            # Names absent from /sys, so no interface is told apart as virtual.
            nics(lo=10**9, nic0test=100, nic1test=50),
            nics(lo=10**9, nic0test=120),  # nic1test went away (a container stopped)
            nics(lo=10**9, nic0test=130, nic1test=5),  # and came back from zero
        ]
    )
    monkeypatch.setattr(procfs, "net_io_counters", lambda: next(readings))
    sampler = Sampler()

    received = [sampler.sample().net_rx_bytes for _ in range(3)]

    assert received == [150, 170, 185]


def test_missing_counters_read_as_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    def unavailable() -> Any:
        raise FileNotFoundError("/proc/diskstats")

    monkeypatch.setattr(procfs, "disk_io_counters", unavailable)
    monkeypatch.setattr(procfs, "net_io_counters", lambda: {})

    sample = Sampler().sample()

    assert (sample.disk_read_bytes, sample.disk_write_bytes) == (0, 0)
    assert (sample.net_rx_bytes, sample.net_tx_bytes) == (0, 0)


# -- the VPS cgroup (vps_cgroup in agent.toml) ---------------------------------------------

MIB = 1024 * 1024


def fake_hierarchy(top: Path, files: dict[str, str]) -> None:
    top.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (top / name).write_text(text)


def test_cgroup_v1_files_are_read_as_the_kernel_writes_them(tmp_path: Path) -> None:
    """Files on disk in the kernel's formats; hierarchies found through a mountinfo file."""
    memory, cpu = tmp_path / "memory", tmp_path / "cpu acct"  # a space: escaped in mountinfo
    fake_hierarchy(
        memory / "mf/vps",
        {
            "memory.limit_in_bytes": f"{1024 * MIB}\n",
            "memory.usage_in_bytes": f"{300 * MIB}\n",
            "memory.stat": f"cache {150 * MIB}\ninactive_file 1\ntotal_inactive_file {100 * MIB}\n",
        },
    )
    fake_hierarchy(
        cpu / "mf/vps",
        {
            "cpu.cfs_quota_us": "150000\n",
            "cpu.cfs_period_us": "100000\n",
            "cpuacct.usage": "2500000000\n",
        },
    )
    escaped = str(cpu).replace(" ", "\\040")
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
        f"30 22 0:26 / {memory} rw,nosuid shared:10 - cgroup cgroup rw,memory\n"
        f"31 22 0:27 / {escaped} rw,nosuid - cgroup cgroup rw,cpu,cpuacct\n"
    )
    cgroup = VpsCgroup("/mf/vps", mountinfo)
    assert cgroup.version == 1
    assert cgroup.read() == CgroupReading(
        memory_limit_bytes=1024 * MIB,
        memory_used_bytes=200 * MIB,  # usage minus the inactive file cache
        cpu_limit=1.5,
        cpu_seconds=2.5,
    )
    (memory / "mf/vps/memory.limit_in_bytes").write_text("9223372036854771712\n")  # unlimited
    (cpu / "mf/vps/cpu.cfs_quota_us").write_text("-1\n")
    reading = cgroup.read()
    assert (reading.memory_limit_bytes, reading.cpu_limit) == (None, None)
    with pytest.raises(CgroupError, match="not mounted here"):
        VpsCgroup("/mf/other", mountinfo)
    (memory / "mf/vps/memory.stat").unlink()  # the cgroup went away under us
    with pytest.raises(CgroupError, match=r"memory\.stat"):
        cgroup.read()


def test_cgroup_v2_files_are_read_as_the_kernel_writes_them(tmp_path: Path) -> None:
    unified = tmp_path / "unified"
    fake_hierarchy(
        unified / "mf/vps",
        {
            "memory.max": f"{512 * MIB}\n",
            "memory.current": f"{64 * MIB}\n",
            "memory.stat": f"anon {30 * MIB}\nfile {34 * MIB}\ninactive_file {16 * MIB}\n",
            "cpu.max": "200000 100000\n",
            "cpu.stat": "usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n",
        },
    )
    mountinfo = tmp_path / "mountinfo"
    # a container's view: the mount shows only part of the hierarchy (root /lxc/c1)
    mountinfo.write_text(f"35 22 0:30 /lxc/c1 {unified} rw - cgroup2 cgroup2 rw,nsdelegate\n")
    cgroup = VpsCgroup("/lxc/c1/mf/vps", mountinfo)
    assert cgroup.version == 2
    assert cgroup.read() == CgroupReading(512 * MIB, 48 * MIB, 2.0, 1.5)
    (unified / "mf/vps/memory.max").write_text("max\n")
    (unified / "mf/vps/cpu.max").write_text("max 100000\n")
    assert cgroup.read() == CgroupReading(None, 48 * MIB, None, 1.5)
    with pytest.raises(CgroupError, match="not mounted here"):
        VpsCgroup("/elsewhere/mf/vps", mountinfo)  # outside what the mount shows
    with pytest.raises(CgroupError, match="absolute cgroup path"):
        VpsCgroup("mf/../../vps", mountinfo)


def test_a_cgroup_never_reports_more_than_the_machine_has() -> None:
    limited = CgroupReading(1024 * MIB, 1500 * MIB, 2.5, 0.0)
    assert cgroup_memory(limited, 4096 * MIB) == (1024 * MIB, 1024 * MIB, 0)
    assert cgroup_memory(limited, 512 * MIB) == (512 * MIB, 512 * MIB, 0)
    assert cgroup_cpus(limited, 8) == 2.5
    assert cgroup_cpus(limited, 2) == 2.0
    unlimited = CgroupReading(None, 100 * MIB, None, 0.0)
    assert cgroup_memory(unlimited, 4096 * MIB) == (4096 * MIB, 100 * MIB, 3996 * MIB)
    assert cgroup_cpus(unlimited, 8) == 8.0


@pytest.fixture
def real_cgroup() -> Iterator[tuple[str, list[Path]]]:
    """A cgroup of 512 MiB and 1 CPU on this machine's cgroup fs, made as the provider does."""
    from control_plane.provisioning.providers.base import ProviderError
    from control_plane.provisioning.providers.local_cgroup import Cgroups
    from control_plane.provisioning.providers.local_state import Limits

    if os.geteuid() != 0:
        pytest.skip("making a cgroup needs root")
    cgroups = Cgroups("mailfleet-test")
    try:
        path = cgroups.path(f"agent-{os.getpid()}-{time.monotonic_ns()}")
    except ProviderError as exc:
        pytest.skip(exc.message)
    cgroups.create(path, Limits(vcpus=1, memory_mb=512, disk_gb=1))
    try:
        yield path, cgroups.procs_files(path)
    finally:
        for pid in cgroups.members(path):
            os.kill(pid, 9)
        deadline = time.monotonic() + 5
        while cgroups.members(path) and time.monotonic() < deadline:
            time.sleep(0.02)
        cgroups.remove(path)
        cgroups.remove_parent()


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_memory() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no MemTotal in /proc/meminfo")


def test_the_sampler_and_facts_report_a_real_cgroup(
    real_cgroup: tuple[str, list[Path]], caplog: pytest.LogCaptureFixture
) -> None:
    path, procs = real_cgroup
    joins = "; ".join(f"echo $$ > {p}" for p in procs)
    busy = subprocess.Popen(
        ["/bin/sh", "-c", f'{joins}; exec "$0" -c "$1"', sys.executable, "while True: pass"]
    )
    try:
        sampler = Sampler(vps_cgroup=path)
        deadline = time.monotonic() + 5
        while busy.pid not in {int(pid) for pid in procs[0].read_text().split()}:
            assert time.monotonic() < deadline, "the busy child never joined the cgroup"
            time.sleep(0.01)
        sampler.sample()
        before, started = cpu_seconds(busy.pid), time.monotonic()
        time.sleep(0.5)
        sample = sampler.sample()
        # the child's own CPU time over the same interval, from /proc: the cgroup's use
        expected = 100 * (cpu_seconds(busy.pid) - before) / (time.monotonic() - started)
        assert sample.cpu_percent > 5
        assert abs(sample.cpu_percent - expected) < 15
        assert sample.memory_total_bytes == 512 * MIB  # the cgroup's limit, not the host's
        assert 0 < sample.memory_used_bytes < 512 * MIB
        assert sample.memory_available_bytes == 512 * MIB - sample.memory_used_bytes
        facts = collect_facts("test", path)
        assert facts["memory_total_bytes"] == 512 * MIB
        assert facts["cpu"]["logical_count"] == 1  # type: ignore[index]
        assert facts["cgroup"] == {"path": path, "cpus": 1.0, "memory_limit_bytes": 512 * MIB}
    finally:
        busy.kill()
        busy.wait()

    # without vps_cgroup: the machine's figures; a cgroup that cannot be read: the same, said
    assert Sampler().sample().memory_total_bytes == machine_memory()
    missing = path + "-gone"
    assert Sampler(vps_cgroup=missing).sample().memory_total_bytes == machine_memory()
    assert f"cgroup {missing} is not mounted here" in caplog.text
    with pytest.raises(CommandError, match="is not mounted here"):
        collect_facts("test", missing)  # a fact is never the host's figure in disguise
