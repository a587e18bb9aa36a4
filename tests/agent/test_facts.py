"""``collect_facts`` on the real machine the tests run on."""

from __future__ import annotations

import json
import os
import platform
import socket
import time
from pathlib import Path

import pytest

from agent.facts import collect_facts
from agent.metrics import PSEUDO_FSTYPES


@pytest.fixture(scope="module")
def facts() -> dict[str, object]:
    return collect_facts("9.8.7-test")


def test_facts_are_plain_json(facts: dict[str, object]) -> None:
    # A round trip equal to the original means no tuples, enums or other non-JSON values.
    assert json.loads(json.dumps(facts)) == facts
    assert set(facts) == {
        "hostname",
        "os",
        "kernel",
        "cpu",
        "memory_total_bytes",
        "swap_total_bytes",
        "disks",
        "addresses",
        "boot_time",
        "python_version",
        "agent_version",
    }


def test_identity(facts: dict[str, object]) -> None:
    assert facts["hostname"] == socket.gethostname()
    assert facts["agent_version"] == "9.8.7-test"
    assert facts["python_version"] == platform.python_version()
    assert facts["kernel"] == {
        "release": os.uname().release,
        "version": os.uname().version,
        "machine": os.uname().machine,
    }


def test_os_release(facts: dict[str, object]) -> None:
    try:
        release = platform.freedesktop_os_release()
    except OSError:
        release = {}
    assert facts["os"] == {
        "id": release.get("ID"),
        "version_id": release.get("VERSION_ID"),
        "pretty_name": release.get("PRETTY_NAME"),
    }


def test_cpu_and_memory(facts: dict[str, object]) -> None:
    cpu = facts["cpu"]
    assert isinstance(cpu, dict)
    assert cpu["logical_count"] == os.cpu_count()
    assert cpu["physical_count"] is None or 1 <= cpu["physical_count"] <= cpu["logical_count"]
    assert cpu["model"] is None or isinstance(cpu["model"], str)
    memory = facts["memory_total_bytes"]
    assert isinstance(memory, int)
    assert memory > 0
    assert isinstance(facts["swap_total_bytes"], int)
    assert facts["swap_total_bytes"] >= 0


def test_root_filesystem_and_no_pseudo_ones(facts: dict[str, object]) -> None:
    disks = facts["disks"]
    assert isinstance(disks, list)
    by_mountpoint = {d["mountpoint"]: d for d in disks}
    assert len(by_mountpoint) == len(disks)
    root = by_mountpoint["/"]
    assert root["total_bytes"] > 0
    assert root["device"]
    assert root["fstype"] not in PSEUDO_FSTYPES
    for disk in disks:
        assert disk["fstype"] not in PSEUDO_FSTYPES
        assert not disk["fstype"].startswith("cgroup")


def test_loopback_address(facts: dict[str, object]) -> None:
    addresses = facts["addresses"]
    assert isinstance(addresses, dict)
    assert {"family": "ipv4", "address": "127.0.0.1", "netmask": "255.0.0.0"} in addresses["lo"]
    for entries in addresses.values():
        for entry in entries:
            assert entry["family"] in {"ipv4", "ipv6", "mac"}
            assert isinstance(entry["address"], str)


def test_boot_time_is_in_the_past(facts: dict[str, object]) -> None:
    boot_time = facts["boot_time"]
    assert isinstance(boot_time, int)
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    assert abs(time.time() - uptime - boot_time) < 5
