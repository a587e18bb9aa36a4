"""Real network namespaces for tests: availability, inspection, and free test addresses."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import shutil
import signal
import subprocess
from pathlib import Path


def netns_unavailable() -> str | None:
    """Why real namespaces cannot be used here, or None."""
    if os.geteuid() != 0:
        return "the local provider tests need root (network namespaces)"
    if shutil.which("ip") is None:
        return "the local provider tests need iproute2 (`ip`)"
    result = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10)
    if result.returncode != 0:
        return f"`ip netns` is unavailable: {result.stderr.strip()}"
    return None


def ip(*args: str, check: bool = True) -> str:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    if check and result.returncode != 0:
        raise AssertionError(f"ip {' '.join(args)}: {result.stderr}")
    return result.stdout


def ip_json(*args: str) -> list[dict[str, object]]:
    out = ip("-j", *args).strip()
    return json.loads(out) if out else []


def namespaces() -> set[str]:
    return {str(n["name"]) for n in ip_json("netns", "list")}


def links() -> set[str]:
    return {str(link["ifname"]) for link in ip_json("link", "show")}


def running(pid: int) -> bool:
    """Alive and not a zombie (a zombie has exited; only its parent's bookkeeping is left)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat[stat.rfind(")") + 2] not in "ZX"


def namespace_pids(namespace: str) -> set[int]:
    return {int(p) for p in ip("netns", "pids", namespace).split()}


def kill_namespace(namespace: str) -> None:
    """SIGKILL every process in ``namespace`` and delete it (a process may exit meanwhile)."""
    for pid in namespace_pids(namespace):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    ip("netns", "delete", namespace, check=False)


def sweep(prefix: str) -> None:
    """Kill and delete what local VPSs named ``prefix`` left: their namespaces (with every
    process in them) and links, the bridge included."""
    for namespace in (n for n in namespaces() if n.startswith(prefix + "-")):
        kill_namespace(namespace)
    for link in (n for n in links() if n.startswith(prefix)):
        ip("link", "delete", "dev", link, check=False)


def _octets() -> range:
    """Third octets this pytest worker may use: parallel workers get disjoint ranges."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    index = int(worker) if worker.isdigit() else 0
    width = 256 // max(count, 1)
    return range(index * width, (index + 1) * width)


def pick_subnet() -> ipaddress.IPv4Network:
    """A /24 of 198.19.0.0/16 that no address on this host is in."""
    taken = {
        ipaddress.IPv4Address(info["local"])
        for link in ip_json("-4", "addr", "show")
        for info in link.get("addr_info", [])  # type: ignore[attr-defined]
    }
    for _ in range(50):
        subnet = ipaddress.IPv4Network(f"198.19.{secrets.choice(_octets())}.0/24")
        if not any(address in subnet for address in taken):
            return subnet
    raise AssertionError("no free /24 in 198.19.0.0/16")
