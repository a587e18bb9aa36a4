"""``mailu.install|status|uninstall`` on a real Docker engine (a dockerd in a namespace that
holds the VPS's address) with stand-in images under MailU's names: Compose, the bind
addresses, env files, volumes and healthchecks are real, and so are the failures."""

from __future__ import annotations

import asyncio
import importlib
import socket
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from agent.errors import CommandError
from agent.mailu.install import install, status, uninstall
from tests.agent.conftest import PAYLOAD, SECRETS, VPS_ADDRESS, MailuEngine, quiet

yaml: Any = importlib.import_module("yaml")


def containers(engine: MailuEngine) -> dict[str, str]:
    """Service → container id of the MailU project on the engine."""
    out = engine.engine.docker(
        "ps", "--all", "--filter", "label=com.docker.compose.project=mailu",
        "--format", '{{.Label "com.docker.compose.service"}} {{.ID}}',
    ).stdout  # fmt: skip
    return dict(line.split() for line in out.splitlines())


async def test_the_lifecycle_of_an_install_on_a_real_engine(
    tmp_path: Path, mailu_engine: MailuEngine
) -> None:
    """Install, no-op, change, failed pull, status, a real unhealthy service, uninstall."""
    root = tmp_path / "vps"
    seen: list[tuple[int, str]] = []
    result = await install(root, PAYLOAD, lambda p, m: seen.append((p, m)))
    mailu = root / "mailu"
    assert result["changed_files"] == ["docker-compose.yml", "mailu.env"]
    assert result["version"] == "2024.06" and result["pulled_images"] == []
    assert result["compose_command"] in ("docker compose", "docker-compose")
    assert {s["health"] for s in result["services"].values()} == {"healthy", "none"}
    assert result["services"]["redis"]["health"] == "none"  # its image has no healthcheck
    assert seen[0][1] == "checking docker" and seen[-1][0] == 100

    env = (mailu / "mailu.env").read_text()
    assert stat.S_IMODE((mailu / "mailu.env").stat().st_mode) == 0o600
    assert "API=true" in env and f"API_TOKEN={SECRETS['api_token']}" in env
    compose = yaml.safe_load((mailu / "docker-compose.yml").read_text())
    assert compose["services"]["smtp"]["image"] == "ghcr.io/mailu/postfix:2024.06"
    assert all((mailu / d).is_dir() for d in ("data", "dkim", "mail", "mailqueue", "certs"))
    assert not any(s in (mailu / "docker-compose.yml").read_text() for s in SECRETS.values())

    async def banner() -> bytes:  # the agent's view: MailU's SMTP port on the VPS address
        with socket.create_connection((VPS_ADDRESS, 25), timeout=5) as connection:
            return connection.recv(100)

    assert (await mailu_engine.run(banner)).startswith(b"220 ")

    # Again: nothing changes. A change recreates only the services that read it.
    before = containers(mailu_engine)
    mtime = (mailu / "docker-compose.yml").stat().st_mtime_ns
    again = await install(root, PAYLOAD, quiet)
    assert again["changed_files"] == [] and containers(mailu_engine) == before
    assert (mailu / "docker-compose.yml").stat().st_mtime_ns == mtime
    changed = await install(root, {**PAYLOAD, "message_ratelimit": "500/day"}, quiet)
    assert changed["changed_files"] == ["mailu.env"]
    after = containers(mailu_engine)
    assert after["redis"] == before["redis"]  # no env file: untouched
    assert after["smtp"] != before["smtp"]  # reads mailu.env: recreated

    # Images that cannot be pulled: the previous files back, the services as they were.
    env_before = (mailu / "mailu.env").read_text()
    mirror = {"message_ratelimit": "500/day", "registry": "registry.mailu.invalid/mailu"}
    with pytest.raises(CommandError, match=r"registry\.mailu\.invalid/mailu/nginx:2024\.06"):
        await install(root, {**PAYLOAD, **mirror}, quiet)  # .invalid never resolves
    assert (mailu / "mailu.env").read_text() == env_before
    assert "ghcr.io/mailu/nginx" in (mailu / "docker-compose.yml").read_text()
    assert containers(mailu_engine) == after

    # Status: services and Postfix's queue (as the smtp container mounts it).
    for name in ("A1B2C3", "D4E5F6"):
        (mailu / "mailqueue" / "deferred" / "A").mkdir(parents=True, exist_ok=True)
        (mailu / "mailqueue" / "deferred" / "A" / name).write_text("queued")
    report = await status(root, {}, quiet)
    assert report["healthy"] is True and report["queue_size"] == 2
    assert report["services"]["front"]["image"] == "ghcr.io/mailu/nginx:2024.06"

    # Postfix stops listening: the image's healthcheck fails, for real, and is named.
    mailu_engine.engine.docker("exec", after["smtp"], "sh", "-c", "kill $(pidof nc)")
    deadline = time.monotonic() + 60  # an upper bound, for a loaded machine
    while (await status(root, {}, quiet))["services"]["smtp"]["health"] != "unhealthy":
        assert time.monotonic() < deadline, "smtp never turned unhealthy"
        await asyncio.sleep(0.5)
    with pytest.raises(CommandError, match="unhealthy: smtp"):
        await install(root, PAYLOAD | {"message_ratelimit": "500/day"}, quiet)

    # Uninstall: containers gone, the mail kept.
    (mailu / "mail" / "kept").write_text("a message")
    assert await uninstall(root, {}, quiet) == {"uninstalled": True, "data_purged": False}
    assert containers(mailu_engine) == {}
    assert not (mailu / "mailu.env").exists()
    assert (mailu / "mail" / "kept").read_text() == "a message"
    assert (await status(root, {}, quiet))["installed"] is False


async def test_without_docker_or_its_engine_nothing_is_written(
    tmp_path: Path, mailu_engine: MailuEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    with pytest.raises(CommandError, match="Cannot connect to the Docker daemon"):
        await install(tmp_path / "vps", PAYLOAD, quiet)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(CommandError, match="docker is not installed on this server"):
        await install(tmp_path / "vps", PAYLOAD, quiet)
    assert not (tmp_path / "vps" / "mailu").exists()


async def test_a_taken_port_or_an_absent_address_fails_the_start_and_leaves_nothing(
    tmp_path: Path, mailu_engine: MailuEngine
) -> None:
    async def hold_port() -> socket.socket:
        listener = socket.socket()
        listener.bind((VPS_ADDRESS, 587))
        listener.listen()
        return listener

    listener = await mailu_engine.run(hold_port)
    try:
        with pytest.raises(CommandError, match=f"{VPS_ADDRESS}:587"):
            await install(tmp_path / "vps", PAYLOAD, quiet)
    finally:
        listener.close()
    assert not (tmp_path / "vps" / "mailu" / "docker-compose.yml").exists()
    assert containers(mailu_engine) == {}

    with pytest.raises(CommandError, match="docker pull"):
        await install(tmp_path / "vps", {**PAYLOAD, "version": "2024.07"}, quiet)
    assert not (tmp_path / "vps" / "mailu" / "mailu.env").exists()

    with pytest.raises(CommandError, match=r"198\.18\.1\.99"):
        await install(tmp_path / "vps", {**PAYLOAD, "bind_address": "198.18.1.99"}, quiet)
    assert not (tmp_path / "vps" / "mailu" / "mailu.env").exists()
    assert containers(mailu_engine) == {}


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
        ({"registry": "Registry/../x"}, "payload.registry"),
    ],
)
async def test_bad_specs_are_refused_before_anything_runs(
    tmp_path: Path, change: dict[str, Any], field: str
) -> None:
    with pytest.raises(CommandError, match=field):
        await install(tmp_path / "vps", {**PAYLOAD, **change}, quiet)
    assert not (tmp_path / "vps").exists()
