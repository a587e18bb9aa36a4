"""What the local provider remembers about its VPSs: one JSON file per instance.

Kept on disk, not in memory, so that a restarted control plane (or a second replica on the
same host) sees the same VPSs and never hands out an address that is already in use. One
file per instance (``<state_dir>/<id>/instance.json``) rather than one shared file: deleting
the instance's directory at ``terminate`` forgets it completely, and a corrupt file can only
hide one VPS. Writes are atomic (temporary file + rename), and every change that allocates
or frees something happens under an exclusive ``flock`` on ``<state_dir>/.lock``, which holds
across processes as well as across tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import re
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

from control_plane.provisioning.providers.base import InstanceStatus, ProviderError
from control_plane.provisioning.providers.local_proc import ProcessRef

RECORD = "instance.json"
LOCK = ".lock"
INSTANCE_ID = re.compile(r"^[0-9a-f]{8}$")


@dataclass(frozen=True)
class Limits:
    """The resources a plan grants; recorded on the instance (resizes change them)."""

    vcpus: int
    memory_mb: int
    disk_gb: int


@dataclass(frozen=True)
class LocalRecord:
    """One local VPS as the provider keeps it.

    The namespace and veth names are stored rather than recomputed, so changing the
    provider's naming settings later never loses track of a running VPS.
    """

    id: str
    name: str
    status: InstanceStatus
    region: str
    plan: str
    limits: Limits
    ipv4: tuple[str, ...]  # main address first
    prefixlen: int
    namespace: str
    host_veth: str
    bridge: str
    ssh_public_key: str
    created_at: float
    previous_plan: str | None = None
    previous_limits: Limits | None = None
    reverse_dns: dict[str, str] = field(default_factory=dict)
    boot: tuple[ProcessRef, ...] = ()
    cgroup: str | None = None  # its cgroup path (local_cgroup); None for older records

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LocalRecord:
        previous = data.get("previous_limits")
        return cls(
            id=str(data["id"]),
            name=str(data["name"]),
            status=cast(InstanceStatus, data["status"]),
            region=str(data["region"]),
            plan=str(data["plan"]),
            limits=Limits(**data["limits"]),
            ipv4=tuple(str(ip) for ip in data["ipv4"]),
            prefixlen=int(data["prefixlen"]),
            namespace=str(data["namespace"]),
            host_veth=str(data["host_veth"]),
            bridge=str(data["bridge"]),
            ssh_public_key=str(data["ssh_public_key"]),
            created_at=float(data["created_at"]),
            previous_plan=data.get("previous_plan"),
            previous_limits=Limits(**previous) if previous else None,
            reverse_dns={str(k): str(v) for k, v in data.get("reverse_dns", {}).items()},
            boot=tuple(ProcessRef(int(p["pid"]), int(p["start"])) for p in data.get("boot", [])),
            cgroup=data.get("cgroup"),
        )


class InstanceStore:
    """The instance records under ``state_dir``."""

    def __init__(self, state_dir: Path, lock_timeout: float) -> None:
        self.state_dir = state_dir
        self.lock_timeout = lock_timeout

    def directory(self, instance_id: str) -> Path:
        """The instance's state directory; ids are checked so none can name another path."""
        if not INSTANCE_ID.match(instance_id):
            raise ValueError(f"not a local instance id: {instance_id!r}")
        return self.state_dir / instance_id

    def load(self, instance_id: str) -> LocalRecord | None:
        if not INSTANCE_ID.match(instance_id):
            return None
        path = self.state_dir / instance_id / RECORD
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ProviderError(f"cannot read the local provider's state {path}: {exc}") from None
        try:
            return LocalRecord.from_json(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise ProviderError(f"the local provider's state {path} is damaged: {exc}") from None

    def all(self) -> list[LocalRecord]:
        """Every recorded instance, oldest first."""
        if not self.state_dir.is_dir():
            return []
        records = []
        for entry in self.state_dir.iterdir():
            if INSTANCE_ID.match(entry.name) and (entry / RECORD).is_file():
                record = self.load(entry.name)
                if record is not None:
                    records.append(record)
        return sorted(records, key=lambda r: (r.created_at, r.id))

    def save(self, record: LocalRecord) -> None:
        """Write the record atomically: a crash leaves the old version or the new one."""
        directory = self.directory(record.id)
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = directory / RECORD
        temporary = directory / f".{RECORD}.tmp"
        with temporary.open("w") as handle:
            json.dump(record.to_json(), handle, indent=2, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)

    def remove(self, instance_id: str) -> None:
        shutil.rmtree(self.directory(instance_id), ignore_errors=False)

    @contextlib.asynccontextmanager
    async def locked(self) -> AsyncIterator[None]:
        """Hold the state lock, waiting at most ``lock_timeout`` seconds for it.

        ``LOCK_NB`` polled from the event loop rather than a blocking ``flock`` in a
        thread: a waiter that is cancelled must not acquire the lock later and keep it.
        """
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.state_dir / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            deadline = time.monotonic() + self.lock_timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise ProviderError(
                            f"the local provider's state {self.state_dir} stayed locked for "
                            f"{self.lock_timeout:g}s",
                            retryable=True,
                        ) from None
                    await asyncio.sleep(0.02)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock
