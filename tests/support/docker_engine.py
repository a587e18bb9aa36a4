"""A real Docker engine (Debian's dockerd) inside a network namespace, for tests.

A dockerd in the host's namespace would set the host's FORWARD policy to DROP and break the
local provider's VPS-to-VPS traffic, so the engine only ever runs inside a namespace the test
made: ``nsenter --net=/var/run/netns/<ns> dockerd …`` (``ip netns exec`` remounts /sys and
dockerd stops with "Devices cgroup isn't mounted"). Its data root, exec root, socket and log
are under one directory; ``stop`` puts back everything it changed: its processes (dockerd,
its containerd, the shims and containers), the mounts under the directory, the namespace's
iptables rules, ``ip_forward`` and the links it made.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from control_plane.provisioning.providers.local_docker import remove_cgroup_trees, unmount_under

DOCKERD = "/usr/sbin/dockerd"
DOCKER = shutil.which("docker") or "docker"  # found once: a test may empty PATH
CLONE_NEWNET = 0x40000000
T = TypeVar("T")


def engine_unavailable() -> str | None:
    """Why a Docker engine cannot run here, or None."""
    if os.geteuid() != 0:
        return "a Docker engine in a namespace needs root"
    for binary in (DOCKERD, "docker", "nsenter", "iptables-save", "nft"):
        if shutil.which(binary) is None:
            return f"{binary} is not installed (make system-deps installs docker.io)"
    return None


def _in_namespace(namespace: str, *argv: str, check: bool = True) -> str:
    result = subprocess.run(
        ["nsenter", f"--net=/var/run/netns/{namespace}", *argv],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} in {namespace}: {result.stderr.strip()}")
    return result.stdout


@dataclass
class _Snapshot:
    """What dockerd changes in its namespace, as it was before it started."""

    iptables: str
    ip_forward: str
    links: set[str]

    @classmethod
    def take(cls, namespace: str) -> _Snapshot:
        links = json.loads(_in_namespace(namespace, "ip", "-j", "link", "show") or "[]")
        return cls(
            iptables=_in_namespace(namespace, "iptables-save"),
            ip_forward=_in_namespace(namespace, "sysctl", "-n", "net.ipv4.ip_forward").strip(),
            links={str(link["ifname"]) for link in links},
        )

    def put_back(self, namespace: str) -> None:
        """The tables as they were: ones dockerd created are deleted (iptables-nft keeps
        them as nftables tables), the others restored whole (rules, chains, policies)."""
        had = {line[1:] for line in self.iptables.splitlines() if line.startswith("*")}
        for table in sorted({"filter", "nat"} - had):
            _in_namespace(namespace, "nft", "delete", "table", "ip", table, check=False)
        if had:
            subprocess.run(
                ["nsenter", f"--net=/var/run/netns/{namespace}", "iptables-restore"],
                input=self.iptables, text=True, capture_output=True, timeout=30, check=True,
            )  # fmt: skip
        _in_namespace(namespace, "sysctl", "-q", "-w", f"net.ipv4.ip_forward={self.ip_forward}")
        now = json.loads(_in_namespace(namespace, "ip", "-j", "link", "show") or "[]")
        for name in sorted({str(link["ifname"]) for link in now} - self.links):
            _in_namespace(namespace, "ip", "link", "delete", name, check=False)


@dataclass
class DockerEngine:
    """A running dockerd: talk to it with ``env()`` (``DOCKER_HOST``) or ``docker(…)``."""

    namespace: str
    directory: Path
    exec_root: Path
    process: subprocess.Popen[bytes]
    snapshot: _Snapshot
    stopped: bool = field(default=False)

    @property
    def socket(self) -> Path:
        return self.directory / "docker.sock"

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": self.host}

    def docker(
        self, *args: str, input: bytes | None = None, timeout: float = 60, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        raw = subprocess.run(
            [DOCKER, *args], env=self.env(), capture_output=True, timeout=timeout, input=input
        )
        result = subprocess.CompletedProcess(
            raw.args, raw.returncode, raw.stdout.decode(errors="replace"),
            raw.stderr.decode(errors="replace"),
        )  # fmt: skip
        if check and result.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args[:3])}: {result.stderr.strip()[-500:]}")
        return result

    def log(self) -> str:
        path = self.directory / "dockerd.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def remove_all_containers(self) -> None:
        """Between tests sharing the engine: no container, network or volume left."""
        ids = self.docker("ps", "-aq").stdout.split()
        if ids:
            self.docker("rm", "-f", "-v", *ids)
        self.docker("network", "prune", "-f")
        self.docker("volume", "prune", "-f")

    def stop(self, grace: float = 15.0) -> None:
        """Stop dockerd and undo everything it did; safe to call twice."""
        if self.stopped:
            return
        self.stopped = True
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        _kill_trees(_processes_mentioning(str(self.exec_root)))
        unmount_under(self.directory)
        unmount_under(self.exec_root)
        self.snapshot.put_back(self.namespace)
        shutil.rmtree(self.exec_root, ignore_errors=True)
        shutil.rmtree(self.directory / "data", ignore_errors=True)


def start_engine(
    namespace: str,
    directory: Path,
    *,
    cgroup_parent: str | None = None,
    timeout: float = 30.0,
) -> DockerEngine:
    """Start dockerd in ``namespace`` with everything under ``directory``.

    The exec root (containerd's socket lives there, and a unix socket path may not exceed
    107 bytes) is a short directory under /run when ``directory`` is long.
    """
    directory.mkdir(parents=True, exist_ok=True)
    exec_root = directory / "exec"
    if len(str(exec_root)) > 40:
        exec_root = Path(tempfile.mkdtemp(prefix="mfdk-", dir="/run"))
    (directory / "daemon.json").write_text("{}\n")  # not the host's /etc/docker/daemon.json
    snapshot = _Snapshot.take(namespace)
    argv = [
        "nsenter", f"--net=/var/run/netns/{namespace}", DOCKERD,
        "--config-file", str(directory / "daemon.json"),
        "--data-root", str(directory / "data"),
        "--exec-root", str(exec_root),
        "--host", f"unix://{directory / 'docker.sock'}",
        "--pidfile", str(directory / "dockerd.pid"),
        "--bridge", "none",  # Compose makes the networks MailU uses
        "--shutdown-timeout", "3",
        "--log-level", "warn",
    ]  # fmt: skip
    if cgroup_parent:
        argv += ["--cgroup-parent", cgroup_parent]
    with (directory / "dockerd.log").open("ab") as log:
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )
    engine = DockerEngine(namespace, directory, exec_root, process, snapshot)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            engine.stop()
            raise RuntimeError(f"dockerd exited ({process.returncode}): {engine.log()[-800:]}")
        if engine.socket.exists():
            probe = engine.docker("version", "--format", "{{.Server.Version}}", check=False)
            if probe.returncode == 0:
                return engine
        if time.monotonic() > deadline:
            engine.stop()
            raise RuntimeError(f"dockerd did not answer within {timeout:.0f} s")
        time.sleep(0.1)


def _processes_mentioning(text: str) -> set[int]:
    """Processes whose command line names ``text`` (containerd and its shims name the exec
    root) — and all their descendants (the containers)."""
    parents: dict[int, int] = {}
    roots: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        pid = int(entry.name)
        parents[pid] = int(stat[stat.rfind(")") + 2 :].split()[1])
        if text in cmdline:
            roots.add(pid)
    found = set(roots)
    grew = True
    while grew:
        children = {pid for pid, parent in parents.items() if parent in found} - found
        found |= children
        grew = bool(children)
    return found - {os.getpid()}


def _kill_trees(pids: set[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while pids and time.monotonic() < deadline:
        pids = {p for p in pids if Path(f"/proc/{p}").exists() and not _zombie(p)}
        time.sleep(0.02)


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rfind(")") + 2] in "ZX"


def make_namespace(name: str, addresses: tuple[str, ...] = ()) -> None:
    """A namespace with loopback up, holding ``addresses`` (the VPS's)."""
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True, timeout=10)
    try:
        _in_namespace(name, "ip", "link", "set", "lo", "up")
        for address in addresses:
            _in_namespace(name, "ip", "addr", "add", f"{address}/32", "dev", "lo")
    except RuntimeError:
        delete_namespace(name)
        raise


def delete_namespace(name: str) -> None:
    subprocess.run(["ip", "netns", "delete", name], capture_output=True, timeout=10, check=False)


def run_in_namespace(namespace: str, work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``work()`` on an event loop in a thread that has joined ``namespace``, as the
    agent of a VPS would: its sockets, subprocesses and executor threads are all in there
    (a thread's network namespace is its own, and threads it creates inherit it)."""
    outcome: dict[str, Any] = {}

    def thread() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            with open(f"/var/run/netns/{namespace}") as handle:
                if libc.setns(handle.fileno(), CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns into {namespace}")
            outcome["value"] = asyncio.run(work())
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    runner = threading.Thread(target=thread, name=f"netns-{namespace}")
    runner.start()
    runner.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]  # type: ignore[no-any-return]


def sweep_vps_engines(prefix: str, state_dir: Path) -> list[str]:
    """What local VPSs named ``prefix`` left of their engines after a failed test (their
    containers live in child cgroups, outside the namespace a sweep kills): those processes
    killed, the mounts under ``state_dir`` and their exec roots undone, the cgroups removed.
    Returns what it found, for the test's report."""
    found: list[str] = []
    tops = sorted(Path("/sys/fs/cgroup").glob(f"*/*/{prefix}-*"))
    pids: set[int] = set()
    for top in tops:
        for procs in [top / "cgroup.procs", *top.glob("*/**/cgroup.procs")]:
            with contextlib.suppress(OSError):
                pids |= {int(pid) for pid in procs.read_text().split()}
    if pids:
        found.append(f"{len(pids)} processes in cgroups of {prefix}-*")
        _kill_trees(pids)
    exec_roots = sorted(Path("/run/mailfleet-local").glob(f"{prefix}-*"))
    for directory in [state_dir, *exec_roots]:
        if directory.exists():
            unmount_under(directory)
    for path in exec_roots:  # and the engines' sockets beside them
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    for cgroup in {"/" + str(top.relative_to(top.parents[1])) for top in tops}:
        remove_cgroup_trees(cgroup)
    return found
