"""A real control plane (``mailfleet serve``) and real agent processes for end-to-end tests."""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from control_plane.api_keys.tokens import key_hint
from tests.support.openbao import DevOpenBao
from tests.support.ports import free_port
from tests.support.processes import Running, run_cli, spawn

FAST_INTERVALS = {
    "MAILFLEET_HEARTBEAT_INTERVAL_SECONDS": "0.5",
    "MAILFLEET_AGENT_UNKNOWN_AFTER_SECONDS": "2",
    "MAILFLEET_METRICS_INTERVAL_SECONDS": "1",
    # No DNSBL catalog: tests look addresses up only on their own Knot-served lists.
    "MAILFLEET_DNSBL_LISTS": "[]",
}


class ControlPlane:
    """``mailfleet serve`` on fixed ports, so it can be killed and started again in place."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.url = f"http://{env['MAILFLEET_API_ADDR']}"
        self.process: Running | None = None
        self.admin_key = ""
        self.http = httpx.Client(base_url=self.url, timeout=30)
        self.logs: list[str] = []

    def start(self, *, bootstrap: bool = False) -> None:
        args = ["--bootstrap-admin-key"] if bootstrap else []
        self.process = spawn("mailfleet", "serve", *args, env=self.env)
        self.process.wait_for_line("MailFleet API:", 60)
        if bootstrap:
            line = self.process.wait_for_line("Admin API key", 10)
            if line.startswith("Admin API key (shown once): "):
                self.admin_key = line.rsplit(" ", 1)[1]
            else:  # serve mints none while one works (another plane on this session's database)
                made = run_cli("api-key", "create", "--admin", env=self.env)
                assert made.returncode == 0, made.stderr
                self.admin_key = made.stdout.strip()
            self.http.headers["Authorization"] = f"Bearer {self.admin_key}"

    def revoke_admin_key(self) -> None:
        """Revoke this plane's admin key, so the next plane on the database gets a fresh one."""
        if self.process is None or not self.admin_key:
            return
        hint = key_hint(self.admin_key)
        with contextlib.suppress(httpx.HTTPError):
            listed = self.http.get("/api/v1/api-keys", params={"limit": 500})
            keys = listed.json()["items"] if listed.status_code == 200 else []
            for key in (k for k in keys if k["hint"] == hint and k["scope"] == "admin"):
                self.http.delete(f"/api/v1/api-keys/{key['id']}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None:
            self.process.stop(sig)
            self.logs += self.process.output()
            self.process = None

    def output(self) -> list[str]:
        return self.logs + (self.process.output() if self.process else [])

    def api(self, method: str, path: str, expect: int = 200, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        if response.status_code >= 500:  # show the server's side of it
            time.sleep(0.2)
            tail = "\n".join(self.output()[-60:])
            raise AssertionError(f"{method} {path}: {response.status_code}\n{tail}")
        assert response.status_code == expect, (method, path, response.status_code, response.text)
        return response.json() if response.content else None

    def new_server(self, name: str) -> tuple[str, str]:
        """A tenant-owned manual server and the agent.toml (with a fresh join token) for it."""
        tenant_name = f"t-{name}-{time.time_ns()}"
        tenant = self.api("POST", "/api/v1/tenants", 201, json={"name": tenant_name})
        server = self.api(
            "POST",
            "/api/v1/servers",
            201,
            json={
                "name": name,
                "provider": "manual",
                "tenant_id": tenant["id"],
                "mail_stack": "none",
            },
        )
        return server["id"], self.join_toml(server["id"])

    def join_toml(self, server_id: str) -> str:
        return str(self.api("POST", f"/api/v1/servers/{server_id}/join-tokens", 201)["agent_toml"])

    def command(self, server_id: str, kind: str, **payload: Any) -> dict[str, Any]:
        body = {"kind": kind, "payload": payload}
        result: dict[str, Any] = self.api(
            "POST", f"/api/v1/servers/{server_id}/commands", 201, json=body
        )
        return result

    def wait_command(self, server_id: str, command_id: str, timeout: float = 30) -> dict[str, Any]:
        """Long-poll the command until it settles (the API holds the request meanwhile)."""
        path = f"/api/v1/servers/{server_id}/commands/{command_id}"
        deadline = time.monotonic() + timeout
        command: dict[str, Any] = {}
        while time.monotonic() < deadline:
            wait = max(0.1, min(10.0, deadline - time.monotonic()))
            command = self.api("GET", path, params={"wait_seconds": wait})
            if command["state"] in {"succeeded", "failed", "timed_out", "cancelled"}:
                return command
        raise AssertionError(f"{path} did not settle within {timeout} s: {command}")

    def wait_status(self, server_id: str, status: str, timeout: float = 30) -> dict[str, Any]:
        return self.wait_until(
            f"/api/v1/servers/{server_id}", lambda s: s["status"] == status, timeout
        )

    def wait_until(self, path: str, done: Any, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        body: dict[str, Any] = {}
        while time.monotonic() < deadline:
            body = self.api("GET", path)
            if done(body):
                return body
            time.sleep(0.1)
        raise AssertionError(f"{path} not as expected within {timeout} s: {body}")


def control_plane_env(
    tmp: Path, openbao: DevOpenBao, database_url: str, **extra: str
) -> dict[str, str]:
    token_file = tmp / "vault-token"
    token_file.write_text(openbao.token)
    token_file.chmod(0o600)
    return {
        "MAILFLEET_HOME": str(tmp / "cp"),
        "MAILFLEET_DATABASE_URL": database_url,
        "MAILFLEET_API_ADDR": f"127.0.0.1:{free_port()}",
        "MAILFLEET_GRPC_ADDR": f"127.0.0.1:{free_port()}",
        "MAILFLEET_ENROLL_ADDR": f"127.0.0.1:{free_port()}",
        "MAILFLEET_VAULT_ADDR": openbao.url,
        "MAILFLEET_VAULT_TOKEN_FILE": str(token_file),
        **FAST_INTERVALS,
        **extra,
    }


@contextmanager
def control_plane(
    tmp: Path, openbao: DevOpenBao, database_url: str, **extra: str
) -> Iterator[ControlPlane]:
    plane = ControlPlane(control_plane_env(tmp, openbao, database_url, **extra))
    try:
        plane.start(bootstrap=True)
        yield plane
    finally:
        plane.revoke_admin_key()
        plane.stop()
        plane.http.close()


class AgentProcess:
    """``mailfleet-agent run`` with its own config and state directory."""

    def __init__(self, directory: Path, toml: str, **options: float) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.config = directory / "agent.toml"
        self.state_dir = directory / "state"
        self.write_config(
            toml, **{"backoff_initial_seconds": 0.2, "backoff_max_seconds": 2.0, **options}
        )
        self.process: Running | None = None
        self.logs: list[str] = []

    def write_config(self, toml: str, **options: float) -> None:
        tuning = "".join(f"{k} = {v}\n" for k, v in options.items())
        self.config.write_text(f'state_dir = "{self.state_dir}"\n{toml}\n[agent]\n{tuning}')

    def start(self) -> None:
        self.process = spawn("mailfleet-agent", "run", "--config", str(self.config), env={})

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None:
            self.process.stop(sig)
            time.sleep(0.1)
            self.logs += self.process.output()
            self.process = None

    def output(self) -> list[str]:
        return self.logs + (self.process.output() if self.process else [])


@contextmanager
def agents(*processes: AgentProcess) -> Iterator[tuple[AgentProcess, ...]]:
    try:
        for process in processes:
            process.start()
        yield processes
    finally:
        for process in processes:
            process.stop()
