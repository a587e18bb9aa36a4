"""The sampler against this machine; psutil is replaced only for what cannot happen here."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil
import pytest

from agent.metrics import PSEUDO_FSTYPES, MetricSample, Sampler


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
    assert min(sample.disk_read_bytes, sample.disk_write_bytes) >= 0
    assert min(sample.net_rx_bytes, sample.net_tx_bytes) >= 0
    assert sample.process_count >= 1


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


def test_time_moves_on_and_counters_never_decrease(tmp_path: Path) -> None:
    sampler = Sampler()
    first = sampler.sample()
    data = tmp_path / "data"
    data.write_bytes(os.urandom(1 << 20))
    with data.open("rb+") as f:
        os.fsync(f.fileno())
    second = sampler.sample()

    assert second.timestamp > first.timestamp
    for counter in ("disk_read_bytes", "disk_write_bytes", "net_rx_bytes", "net_tx_bytes"):
        assert getattr(second, counter) >= getattr(first, counter), counter


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
    return lambda all=False: parts


def test_pseudo_hidden_and_duplicate_mounts_are_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        psutil,
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
        return SimpleNamespace(total=100, used=40, free=60, percent=40.0)

    monkeypatch.setattr(psutil, "disk_usage", disk_usage)

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
    real = psutil.disk_usage
    calls: list[str] = []

    def disk_usage(path: str) -> Any:
        calls.append(path)
        if path == "/":
            release.wait(30)
        return real(path)

    monkeypatch.setattr(psutil, "disk_partitions", fake_partitions(("/dev/vda", "/", "ext4")))
    monkeypatch.setattr(psutil, "disk_usage", disk_usage)
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
    monkeypatch.setattr(psutil, "net_io_counters", lambda **kwargs: next(readings))
    sampler = Sampler()

    received = [sampler.sample().net_rx_bytes for _ in range(3)]

    assert received == [150, 170, 185]


def test_missing_counters_read_as_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    def unavailable(**kwargs: Any) -> Any:
        raise NotImplementedError("/proc/diskstats nor /sys/block are available")

    monkeypatch.setattr(psutil, "disk_io_counters", unavailable)
    monkeypatch.setattr(psutil, "net_io_counters", lambda **kwargs: None)

    sample = Sampler().sample()

    assert (sample.disk_read_bytes, sample.disk_write_bytes) == (0, 0)
    assert (sample.net_rx_bytes, sample.net_tx_bytes) == (0, 0)
