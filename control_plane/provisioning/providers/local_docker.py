"""A local VPS's own Docker engine: a dockerd inside its network namespace.

MailU's ports must bind on the VPS's address, as on a rented VPS, so each VPS runs its own
dockerd: started with ``nsenter --net=<the VPS's namespace>`` (``ip netns exec`` remounts
/sys and dockerd stops with "Devices cgroup isn't mounted"), its data root under the VPS's
directory, its exec root and API socket under /run/mailfleet-local (unix socket paths must
stay short),
its containers under the VPS's cgroup (``--cgroup-parent``), and joined to that cgroup itself
before it runs, so stopping the VPS's processes stops the engine. Its iptables rules and
``ip_forward`` live in the VPS's namespace and go with it. An engine in the host's own
namespace would set the host's FORWARD policy to DROP and cut the VPSs off from each other:
``forward_policy`` reads it so ``prepare`` can say what it found.

``images`` (a ``docker save`` archive) are loaded into each new engine, as a provider's VPS
image may ship them; nothing is pulled for it.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from control_plane.provisioning.providers import local_proc as proc
from control_plane.provisioning.providers.base import ProviderError

DOCKERD = "/usr/sbin/dockerd"
DATA = "docker"
RUN_DIR = Path("/run/mailfleet-local")


@dataclass(frozen=True)
class Engine:
    """Where a VPS's engine keeps things."""

    directory: Path  # the VPS's directory (state, not its root filesystem)
    namespace: str

    @property
    def socket(self) -> Path:
        """Beside the exec root: a unix socket's path may not exceed 107 bytes, and a VPS's
        directory can be longer than that leaves room for."""
        return RUN_DIR / f"{self.namespace}.sock"

    @property
    def host(self) -> str:
        """``DOCKER_HOST`` for the VPS's processes."""
        return f"unix://{self.socket}"

    @property
    def exec_root(self) -> Path:
        return RUN_DIR / self.namespace


def available(dockerd: str = DOCKERD) -> bool:
    return Path(dockerd).is_file() and shutil.which("docker") is not None


def command(engine: Engine, cgroup: str | None) -> list[str]:
    """The dockerd command line (run inside the VPS's namespace)."""
    (engine.directory / "daemon.json").write_text("{}\n")  # not the host's daemon.json
    RUN_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    argv = [
        DOCKERD,
        "--config-file", str(engine.directory / "daemon.json"),
        "--data-root", str(engine.directory / DATA),
        "--exec-root", str(engine.exec_root),
        "--host", engine.host,
        "--pidfile", str(engine.directory / "dockerd.pid"),
        "--bridge", "none",  # Compose makes MailU's networks
        "--shutdown-timeout", "3",
        "--log-level", "warn",
    ]  # fmt: skip
    if cgroup is not None:
        argv += ["--cgroup-parent", cgroup]
    return argv


def wait_ready(engine: Engine, ref: proc.ProcessRef, timeout: float) -> None:
    """Until the engine answers; a ``ProviderError`` with its log's end otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.is_running(ref.pid, ref.start):
            break
        if engine.socket.exists() and _docker(engine, "version", check=False).returncode == 0:
            return
        time.sleep(0.1)
    log = engine.directory / "dockerd.log"
    tail = log.read_text(errors="replace")[-400:] if log.exists() else ""
    raise ProviderError(f"the VPS's dockerd did not answer within {timeout:.0f} s: {tail}")


def load_images(engine: Engine, archive: Path) -> None:
    with archive.open("rb") as handle:
        done = subprocess.run(
            ["docker", "load", "--quiet"], stdin=handle, capture_output=True,
            env={"DOCKER_HOST": engine.host, "PATH": "/usr/local/bin:/usr/bin:/bin"},
            timeout=120, check=False,
        )  # fmt: skip
    if done.returncode != 0:
        raise ProviderError(f"loading {archive} into the VPS's engine: {done.stderr[-300:]!r}")


def _docker(engine: Engine, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=30, check=check,
        env={"DOCKER_HOST": engine.host, "PATH": "/usr/local/bin:/usr/bin:/bin"},
    )  # fmt: skip


def clean_up(engine: Engine, cgroup: str | None) -> None:
    """After the VPS's processes are gone: the mounts the engine left (a killed dockerd
    leaves its containers' overlays and its own bind mount), its exec and data roots, and
    the cgroups runc made under the VPS's in hierarchies the provider does not manage
    (devices, pids, freezer, … on cgroup v1)."""
    if cgroup is not None:
        remove_cgroup_trees(cgroup)
    for top in (engine.exec_root, engine.directory / DATA):
        unmount_under(top)
        shutil.rmtree(top, ignore_errors=True)
    engine.socket.unlink(missing_ok=True)


def unmount_under(top: Path) -> None:
    """Every mount at or below ``top``, deepest first (lazily: nothing may use them now)."""
    prefix = str(top.resolve())
    points = [
        line.split()[4]
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if line.split()[4] == prefix or line.split()[4].startswith(prefix + "/")
    ]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, timeout=10, check=False)


def remove_cgroup_trees(cgroup: str) -> None:
    """The cgroup ``cgroup`` and those below it in every hierarchy, once empty."""
    mounts: list[tuple[str, set[str], Path]] = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        kind = fields[fields.index("-") + 1]
        if kind in ("cgroup", "cgroup2"):
            mounts.append((kind, set(fields[-1].split(",")), Path(fields[4])))
    hybrid = any(kind == "cgroup" and "memory" in options for kind, options, _ in mounts)
    for kind, options, mount in mounts:
        top = mount / cgroup.lstrip("/")
        if not top.is_dir():
            continue
        for directory in sorted(top.glob("**/"), key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                directory.rmdir()
        # runc made the parent too where the provider keeps none: gone once empty (the
        # provider's own hierarchies keep theirs until its teardown).
        managed = bool({"memory", "cpu", "cpuacct"} & options) if kind == "cgroup" else not hybrid
        if not managed:
            with contextlib.suppress(OSError):
                top.parent.rmdir()


def forward_policy(iptables_save: str = "iptables-save") -> str | None:
    """The host's FORWARD policy (None when it cannot be read): an engine in the host's
    namespace sets it to DROP, which cuts VPS-to-VPS traffic on the bridge."""
    try:
        out = subprocess.run(
            [iptables_save, "-t", "filter"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        if line.startswith(":FORWARD "):
            return line.split()[1]
    return None


def describe(engine: Engine) -> dict[str, object]:
    """What the VPS's engine holds (for tests and support)."""
    listed = _docker(engine, "ps", "-a", "--format", "{{json .}}", check=False).stdout
    return {"containers": [json.loads(line) for line in listed.splitlines() if line.strip()]}
