"""``mailu.install|status|uninstall`` against the ``docker`` double (no Docker engine here)."""

from __future__ import annotations

import importlib
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.errors import CommandError
from agent.mailu.install import install, status, uninstall
from tests.fakes import docker_cli
from tests.support.ports import free_port

yaml: Any = importlib.import_module("yaml")
SECRETS = {
    "secret_key": "k" * 32,
    "api_token": "t0ken-" + "a" * 26,
    "admin_password": "Adm1n-" + "p" * 20,
}
PAYLOAD = {
    "domain": "example.net",
    "hostnames": ["mx1.example.net"],
    "postmaster": "postmaster",
    "tls_flavor": "cert",
    "bind_address": "198.18.1.7",
    "health_timeout_seconds": 10,
    "api_port": free_port(),  # the docker double runs Mailu's API there (this host's loopback)
    **SECRETS,
}


class Docker:
    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.state = tmp_path / "docker-state"
        self.bin = tmp_path / "bin"
        docker_cli.install(self.bin, self.state)
        monkeypatch.setenv("PATH", f"{self.bin}:/usr/bin:/bin")

    def commands(self) -> list[str]:
        """The compose sub-commands run so far, e.g. ['pull', 'up', 'ps']."""
        out = []
        for call in docker_cli.calls(self.state):
            argv = call["argv"]
            if argv[:1] == ["compose"] and argv[1:2] != ["version"]:
                out.append(argv[7])
        return out


@pytest.fixture
def docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Docker]:
    double = Docker(tmp_path, monkeypatch)
    yield double
    docker_cli.stop_all(double.state)


def progress_log() -> tuple[list[tuple[int, str]], Any]:
    seen: list[tuple[int, str]] = []
    return seen, lambda percent, message: seen.append((percent, message))


async def test_install_renders_pulls_starts_and_waits_until_healthy(
    tmp_path: Path, docker: Docker
) -> None:
    root = tmp_path / "vps"
    seen, progress = progress_log()
    result = await install(root, PAYLOAD, progress)
    mailu = root / "mailu"
    assert result["changed_files"] == ["docker-compose.yml", "mailu.env"]
    assert result["version"] == "2024.06" and result["compose_version"] == "2.29.7"
    assert {s["health"] for s in result["services"].values()} <= {"healthy", "none"}
    assert docker.commands()[:2] == ["pull", "up"]
    assert seen[0][1] == "checking docker" and seen[-1][0] == 100

    env = (mailu / "mailu.env").read_text()
    assert stat.S_IMODE((mailu / "mailu.env").stat().st_mode) == 0o600
    assert "API=true" in env and f"API_TOKEN={SECRETS['api_token']}" in env
    assert "TLS_FLAVOR=cert" in env and "HOSTNAMES=mx1.example.net" in env
    compose = yaml.safe_load((mailu / "docker-compose.yml").read_text())
    assert compose["services"]["front"]["ports"][0] == "198.18.1.7:80:80"
    assert compose["services"]["smtp"]["image"] == "ghcr.io/mailu/postfix:2024.06"
    assert f"{mailu}/mail:/mail" in compose["services"]["imap"]["volumes"]
    assert all((mailu / d).is_dir() for d in ("data", "dkim", "mail", "mailqueue", "certs"))
    assert not any(
        secret in (mailu / "docker-compose.yml").read_text() for secret in SECRETS.values()
    )


async def test_a_second_install_changes_nothing_and_a_change_restarts_only_what_changed(
    tmp_path: Path, docker: Docker
) -> None:
    root = tmp_path / "vps"
    await install(root, PAYLOAD, lambda p, m: None)
    before = docker_cli.services(docker.state)
    compose_before = (root / "mailu" / "docker-compose.yml").stat().st_mtime_ns

    again = await install(root, PAYLOAD, lambda p, m: None)
    assert again["changed_files"] == []
    assert docker.commands().count("up") == 1 and docker.commands().count("pull") == 1
    assert (root / "mailu" / "docker-compose.yml").stat().st_mtime_ns == compose_before

    changed = await install(root, {**PAYLOAD, "message_ratelimit": "500/day"}, lambda p, m: None)
    assert changed["changed_files"] == ["mailu.env"]
    after = docker_cli.services(docker.state)
    assert after["redis"]["started"] == before["redis"]["started"]  # no env file: untouched
    assert after["smtp"]["started"] > before["smtp"]["started"]  # reads mailu.env: recreated


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        ({"path_without_docker": True}, "docker is not installed on this server"),
        ({"daemon_down": True}, "Cannot connect to the Docker daemon"),
    ],
)
async def test_without_a_working_docker_nothing_is_written(
    tmp_path: Path,
    docker: Docker,
    monkeypatch: pytest.MonkeyPatch,
    setup: dict[str, bool],
    reason: str,
) -> None:
    if setup.get("path_without_docker"):
        monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    else:
        docker_cli.configure(docker.state, **setup)
    with pytest.raises(CommandError, match=reason):
        await install(tmp_path / "vps", PAYLOAD, lambda p, m: None)
    assert not (tmp_path / "vps" / "mailu").exists()


async def test_a_failed_pull_puts_the_previous_configuration_back(
    tmp_path: Path, docker: Docker
) -> None:
    root = tmp_path / "vps"
    await install(root, PAYLOAD, lambda p, m: None)
    env_before = (root / "mailu" / "mailu.env").read_text()
    docker_cli.configure(docker.state, pull_error=True)
    with pytest.raises(CommandError, match="manifest unknown"):
        await install(root, {**PAYLOAD, "version": "2024.07"}, lambda p, m: None)
    assert (root / "mailu" / "mailu.env").read_text() == env_before
    assert "2024.06" in (root / "mailu" / "docker-compose.yml").read_text()

    fresh = tmp_path / "other"
    with pytest.raises(CommandError, match="manifest unknown"):
        await install(fresh, PAYLOAD, lambda p, m: None)
    assert not (fresh / "mailu" / "mailu.env").exists()
    assert not (fresh / "mailu" / "docker-compose.yml").exists()


async def test_an_unhealthy_service_fails_the_install_with_its_name(
    tmp_path: Path, docker: Docker
) -> None:
    docker_cli.configure(docker.state, unhealthy=["smtp"])
    with pytest.raises(CommandError, match="unhealthy: smtp"):
        await install(tmp_path / "vps", PAYLOAD, lambda p, m: None)


async def test_status_reports_services_and_the_queue_and_uninstall_keeps_the_mail(
    tmp_path: Path, docker: Docker
) -> None:
    root = tmp_path / "vps"
    assert (await status(root, {}, lambda p, m: None))["installed"] is False
    await install(root, PAYLOAD, lambda p, m: None)
    (root / "mailu" / "mail" / "kept").write_text("a message")
    docker_cli.configure(docker.state, queue=3)
    report = await status(root, {}, lambda p, m: None)
    assert report["healthy"] is True and report["queue_size"] == 3
    assert report["services"]["front"]["image"] == "ghcr.io/mailu/nginx:2024.06"

    result = await uninstall(root, {}, lambda p, m: None)
    assert result == {"uninstalled": True, "data_purged": False}
    assert docker_cli.services(docker.state) == {}
    assert not (root / "mailu" / "mailu.env").exists()
    assert (root / "mailu" / "mail" / "kept").read_text() == "a message"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"domain": "not a domain"}, "payload.domain"),
        ({"hostnames": []}, "payload.hostnames"),
        ({"bind_address": "::1"}, "payload"),
        ({"api_token": "short"}, "payload.api_token"),
        ({"secret_key": "x" * 20 + "\nEVIL=1"}, "payload.secret_key"),
        ({"tls_flavor": "notls"}, "payload.tls_flavor"),
        ({"version": "latest"}, "payload.version"),
        ({"message_ratelimit": "lots"}, "payload.message_ratelimit"),
    ],
)
async def test_bad_specs_are_refused_before_anything_runs(
    tmp_path: Path, docker: Docker, change: dict[str, Any], field: str
) -> None:
    with pytest.raises(CommandError, match=field):
        await install(tmp_path / "vps", {**PAYLOAD, **change}, lambda p, m: None)
    assert docker_cli.calls(docker.state) == []


async def test_optional_services_follow_the_spec(tmp_path: Path, docker: Docker) -> None:
    payload = {**PAYLOAD, "antivirus": True, "webmail": "roundcube"}
    await install(tmp_path / "vps", payload, lambda p, m: None)
    compose = yaml.safe_load((tmp_path / "vps" / "mailu" / "docker-compose.yml").read_text())
    services = compose["services"]
    assert services["antivirus"]["image"] == "clamav/clamav-debian:1.4"
    assert "clamav" in services["antispam"]["networks"]
    assert services["webmail"]["networks"] == ["webmail"]
    assert compose["networks"]["oletools"]["internal"] is True
    assert "WEBMAIL=roundcube" in (tmp_path / "vps" / "mailu" / "mailu.env").read_text()
