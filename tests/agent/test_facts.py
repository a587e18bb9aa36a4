"""``collect_facts`` on the real machine the tests run on, each fact checked against what
the system's own tools (``uname``, ``getconf``, ``df``, ``ip``, the shell) or a file parsed
here say, not against the calls the code makes."""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
import sys
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
        "compose",
    }


def test_the_compose_that_drives_mailu_is_reported(facts: dict[str, object]) -> None:
    """Debian 12 has docker-compose 1.29 and no v2 plugin: the fallback is what is found."""
    plugin = subprocess.run(["docker", "compose", "version", "--short"], capture_output=True)
    v1 = subprocess.run(["docker-compose", "version", "--short"], capture_output=True, text=True)
    if plugin.returncode == 0:
        assert facts["compose"]["command"] == "docker compose"  # type: ignore[index]
    else:
        assert facts["compose"] == {"command": "docker-compose", "version": v1.stdout.strip()}


def command(*args: str) -> str:
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout.strip()


def test_identity(facts: dict[str, object]) -> None:
    assert facts["hostname"] == command("uname", "-n")
    assert facts["agent_version"] == "9.8.7-test"
    assert facts["python_version"] == command(sys.executable, "--version").split()[1]
    assert facts["kernel"] == {
        "release": command("uname", "-r"),
        "version": command("uname", "-v"),
        "machine": command("uname", "-m"),
    }


def test_os_release(facts: dict[str, object]) -> None:
    """/etc/os-release is shell syntax: the shell reads it here."""
    if not Path("/etc/os-release").exists():
        pytest.skip("no /etc/os-release on this machine")
    script = '. /etc/os-release && printf "%s\\n%s\\n%s" "$ID" "$VERSION_ID" "$PRETTY_NAME"'
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True).stdout
    os_id, version_id, pretty_name = (value or None for value in out.split("\n"))
    assert facts["os"] == {"id": os_id, "version_id": version_id, "pretty_name": pretty_name}


def meminfo_bytes(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB$", Path("/proc/meminfo").read_text(), re.M)
    assert match, field
    return int(match.group(1)) * 1024


def test_cpu_and_memory(facts: dict[str, object]) -> None:
    cpu = facts["cpu"]
    assert isinstance(cpu, dict)
    assert cpu["logical_count"] == int(command("getconf", "_NPROCESSORS_ONLN"))
    assert cpu["physical_count"] is None or 1 <= cpu["physical_count"] <= cpu["logical_count"]
    model = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
    if model:  # x86 names it so; other architectures are covered by the code's key list
        assert cpu["model"] == model.group(1).strip()
    assert facts["memory_total_bytes"] == meminfo_bytes("MemTotal")
    assert facts["swap_total_bytes"] == meminfo_bytes("SwapTotal")


def test_root_filesystem_and_no_pseudo_ones(facts: dict[str, object]) -> None:
    disks = facts["disks"]
    assert isinstance(disks, list)
    by_mountpoint = {d["mountpoint"]: d for d in disks}
    assert len(by_mountpoint) == len(disks)
    root = by_mountpoint["/"]
    size, fstype = command("df", "-B1", "--output=size,fstype", "/").splitlines()[1].split()
    assert (root["total_bytes"], root["fstype"]) == (int(size), fstype)
    assert root["device"] == command("findmnt", "-n", "-o", "SOURCE", "/").splitlines()[-1]
    for disk in disks:
        assert disk["fstype"] not in PSEUDO_FSTYPES
        assert not disk["fstype"].startswith("cgroup")


def test_addresses(facts: dict[str, object]) -> None:
    addresses = facts["addresses"]
    assert isinstance(addresses, dict)
    assert {"family": "ipv4", "address": "127.0.0.1", "netmask": "255.0.0.0"} in addresses["lo"]
    # every IPv4 address `ip` lists on the loopback and the default route's interface
    route = command("ip", "-o", "-4", "route", "show", "default").split()
    devices = ["lo", *([route[route.index("dev") + 1]] if "dev" in route else [])]
    for device in devices:
        listed = {
            (str(iface.ip), str(iface.netmask))
            for line in command("ip", "-o", "-4", "addr", "show", "dev", device).splitlines()
            for iface in [ipaddress.ip_interface(line.split()[3])]
        }
        found = {(e["address"], e["netmask"]) for e in addresses[device] if e["family"] == "ipv4"}
        assert found == listed, device
    for entries in addresses.values():
        for entry in entries:
            assert entry["family"] in {"ipv4", "ipv6", "mac"}
            assert isinstance(entry["address"], str)


def test_boot_time_is_in_the_past(facts: dict[str, object]) -> None:
    boot_time = facts["boot_time"]
    assert isinstance(boot_time, int)
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    assert abs(time.time() - uptime - boot_time) < 5
