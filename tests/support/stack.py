"""A real control plane (``mailfleet serve``) and real agent processes for end-to-end tests."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.openbao import DevOpenBao
from tests.support.ports import free_port
from tests.support.processes import BIN, Running, mailfleet_env, serve

FAST_INTERVALS = {
    "MAILFLEET_HEARTBEAT_INTERVAL_SECONDS": "0.5",
    "MAILFLEET_AGENT_UNKNOWN_AFTER_SECONDS": "2",
    "MAILFLEET_METRICS_INTERVAL_SECONDS": "1",
}


@dataclass
class ControlPlane:
    url: str
    admin_key: str
    env: dict[str, str]
    process: Running
    http: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.http = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.admin_key}"}, timeout=30
        )

    def api(self, method: str, path: str, expect: int = 200, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        assert response.status_code == expect, (method, path, response.status_code, response.text)
        return response.json() if response.content else None

    def new_server(self, name: str) -> tuple[str, str]:
        """A tenant-owned manual server and the agent.toml (with a fresh join token) for it."""
        tenant = self.api(
            "POST", "/api/v1/tenants", 201, json={"name": f"t-{name}-{time.time_ns()}"}
        )
        server = self.api(
            "POST",
            "/api/v1/servers",
            201,
            json={"name": name, "provider": "manual", "tenant_id": tenant["id"]},
        )
        return server["id"], self.join_toml(server["id"])

    def join_toml(self, server_id: str) -> str:
        return str(self.api("POST", f"/api/v1/servers/{server_id}/join-tokens", 201)["agent_toml"])

    def wait_status(self, server_id: str, status: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        server: dict[str, Any] = {}
        while time.monotonic() < deadline:
            server = self.api("GET", f"/api/v1/servers/{server_id}")
            if server["status"] == status:
                return server
            time.sleep(0.1)
        raise AssertionError(f"server {server_id} not {status} within {timeout} s: {server}")


@contextmanager
def control_plane(
    tmp: Path, openbao: DevOpenBao, database_url: str, **extra: str
) -> Iterator[ControlPlane]:
    token_file = tmp / "vault-token"
    token_file.write_text(openbao.token)
    token_file.chmod(0o600)
    api_port = free_port()
    env = {
        "MAILFLEET_HOME": str(tmp / "cp"),
        "MAILFLEET_DATABASE_URL": database_url,
        "MAILFLEET_API_ADDR": f"127.0.0.1:{api_port}",
        "MAILFLEET_GRPC_ADDR": f"127.0.0.1:{free_port()}",
        "MAILFLEET_ENROLL_ADDR": f"127.0.0.1:{free_port()}",
        "MAILFLEET_VAULT_ADDR": openbao.url,
        "MAILFLEET_VAULT_TOKEN_FILE": str(token_file),
        **FAST_INTERVALS,
        **extra,
    }
    with serve(env, "--bootstrap-admin-key") as process:
        process.wait_for_line("MailFleet API:", 60)
        key = process.wait_for_line("Admin API key", 10).rsplit(" ", 1)[1]
        plane = ControlPlane(
            url=f"http://127.0.0.1:{api_port}", admin_key=key, env=env, process=process
        )
        try:
            yield plane
        finally:
            plane.http.close()


def restart(plane: ControlPlane) -> ControlPlane:
    """Start ``serve`` again on the same ports and state (after a stop or a kill -9)."""
    raise NotImplementedError


@contextmanager
def agent_process(config: Path, *, log_level: str = "info") -> Iterator[Running]:
    process = subprocess.Popen(
        [str(BIN / "mailfleet-agent"), "run", "--config", str(config), "--log-level", log_level],
        env=mailfleet_env({}),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    running = Running(process)
    try:
        yield running
    finally:
        running.stop()


def write_agent_config(directory: Path, toml: str, **agent_options: float) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "agent.toml"
    options = "".join(f"{k} = {v}\n" for k, v in agent_options.items())
    config.write_text(
        f'state_dir = "{directory / "state"}"\n'
        + toml
        + ("\n[agent]\n" + options if options else "")
    )
    return config


__all__ = ["ControlPlane", "ExitStack", "agent_process", "control_plane", "write_agent_config"]
