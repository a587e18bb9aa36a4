"""A small async facade over hvac's KV v2 API.

hvac is synchronous (requests); calls run in a worker thread so the event loop never blocks.
Secret values never reach logs: errors name the path, not the data. hvac and requests are
imported where a call is made: a CLI command whose services merely name Vault would pay
about 0.1 s of CPU for them.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from control_plane.errors import Unavailable

if TYPE_CHECKING:
    import hvac

log = logging.getLogger(__name__)
T = TypeVar("T")
_SEGMENT = re.compile(r"^[A-Za-z0-9@+_.-]{1,200}$")


class VaultError(Unavailable):
    """Vault could not be reached or refused a request."""


def secret_path(*parts: object) -> str:
    """Join path segments, refusing anything that could escape its prefix (``..``, ``/``)."""
    segments = [str(part) for part in parts]
    for segment in segments:
        if not _SEGMENT.match(segment) or segment in {".", ".."}:
            raise ValueError(f"invalid secret path segment {segment!r}")
    return "/".join(segments)


def server_secret_path(tenant_id: object, server_id: object, *name: str) -> str:
    """Where a server's secrets live (``vps/<tenant>/<server>/…``): its agent may be handed
    them, and deprovisioning deletes the whole prefix."""
    return secret_path("vps", tenant_id, server_id, *name)


class Vault:
    """KV v2 secrets under one mount, plus health. One instance per process."""

    def __init__(
        self,
        addr: str,
        *,
        token: str | None = None,
        kv_mount: str = "mailfleet",
        timeout: float = 10.0,
        ca_cert: Path | None = None,
        login: Callable[[hvac.Client], None] | None = None,
    ) -> None:
        import hvac

        self.addr = addr
        self.kv_mount = kv_mount
        self._login = login
        verify: bool | str = str(ca_cert) if ca_cert else True
        self._client = hvac.Client(url=addr, token=token, timeout=timeout, verify=verify)
        if login is not None and token is None:
            login(self._client)

    def __repr__(self) -> str:  # never show the token
        return f"Vault(addr={self.addr!r}, kv_mount={self.kv_mount!r})"

    @property
    def client(self) -> hvac.Client:
        """The underlying hvac client, for engines other than KV (e.g. PKI)."""
        return self._client

    async def call(self, fn: Callable[[], T], what: str) -> T:
        """Run one hvac call off the loop; re-login once if the token was refused."""
        import hvac.exceptions
        import requests

        try:
            return await asyncio.to_thread(fn)
        except hvac.exceptions.Forbidden:
            if self._login is None:
                raise VaultError(f"vault refused {what}: permission denied") from None
            await asyncio.to_thread(self._login, self._client)
            return await asyncio.to_thread(fn)
        except requests.RequestException as exc:
            raise VaultError(f"vault unreachable during {what}: {type(exc).__name__}") from None
        except hvac.exceptions.VaultError as exc:
            raise VaultError(f"vault refused {what}: {type(exc).__name__}") from None

    async def is_ready(self) -> bool:
        """Initialised, unsealed and answering."""
        import hvac.exceptions
        import requests

        try:
            status = await asyncio.to_thread(self._client.sys.read_health_status, method="GET")
        except (requests.RequestException, hvac.exceptions.VaultError):
            return False
        if isinstance(status, dict):
            return bool(status.get("initialized")) and not status.get("sealed", True)
        return bool(getattr(status, "status_code", 500) == 200)

    async def ensure_kv_mount(self) -> None:
        """Enable the KV v2 mount MailFleet uses, if it is not there yet."""

        def ensure() -> None:
            mounts = self._client.sys.list_mounted_secrets_engines()
            data = mounts.get("data", mounts)
            if f"{self.kv_mount}/" not in data:
                self._client.sys.enable_secrets_engine(
                    "kv", path=self.kv_mount, options={"version": "2"}
                )

        await self.call(ensure, f"enabling kv mount {self.kv_mount}")

    async def put(self, path: str, data: dict[str, str], *, cas: int | None = None) -> int:
        """Write a new version of ``path``; with ``cas`` only if the current version matches."""
        response = await self.call(
            lambda: self._client.secrets.kv.v2.create_or_update_secret(
                path=path, secret=data, cas=cas, mount_point=self.kv_mount
            ),
            f"write {path}",
        )
        return int(response["data"]["version"])

    async def ensure(self, path: str, make: Callable[[], dict[str, str]]) -> dict[str, str]:
        """The secret at ``path``, written from ``make()`` first if absent.

        The write is check-and-set 0 ("only if absent"): when two writers race, one is
        refused and both read back the winner, so a secret is never silently replaced.
        """
        stored = await self.get(path)
        if stored is not None:
            return stored
        fresh = make()
        try:
            await self.put(path, fresh, cas=0)
        except VaultError:
            stored = await self.get(path)
            if stored is None:
                raise
            return stored
        return fresh

    async def get(self, path: str) -> dict[str, str] | None:
        """The latest version's data, or None when the secret does not exist."""

        def read() -> dict[str, Any] | None:
            import hvac.exceptions

            try:
                return self._client.secrets.kv.v2.read_secret_version(  # type: ignore[no-any-return]
                    path=path, mount_point=self.kv_mount, raise_on_deleted_version=True
                )
            except hvac.exceptions.InvalidPath:
                return None

        response = await self.call(read, f"read {path}")
        return None if response is None else dict(response["data"]["data"])

    async def delete(self, path: str) -> None:
        """Destroy every version and the metadata of ``path``; a missing path is fine."""
        await self.call(
            lambda: self._client.secrets.kv.v2.delete_metadata_and_all_versions(
                path=path, mount_point=self.kv_mount
            ),
            f"delete {path}",
        )

    async def delete_tree(self, prefix: str) -> int:
        """Destroy every secret under ``prefix`` (depth first); how many were destroyed."""
        destroyed = 0
        for key in await self.list(prefix):
            path = f"{prefix}/{key.rstrip('/')}"
            if key.endswith("/"):
                destroyed += await self.delete_tree(path)
            else:
                await self.delete(path)
                destroyed += 1
        return destroyed

    async def list(self, prefix: str) -> list[str]:
        def read() -> list[str]:
            import hvac.exceptions

            try:
                response = self._client.secrets.kv.v2.list_secrets(
                    path=prefix, mount_point=self.kv_mount
                )
            except hvac.exceptions.InvalidPath:
                return []
            return list(response["data"]["keys"])

        return await self.call(read, f"list {prefix}")

    def close(self) -> None:
        self._client.adapter.close()
