"""MailU's compose project through the Docker CLI: ``docker compose`` (the v2 plugin) or,
where a distribution has only that, ``docker-compose`` v1 (Debian 12 ships 1.29).

Which one is detected once per agent process (``compose_command``) and reported in the
agent's facts. The two differ where the agent reads state: v1's ``ps`` has no JSON output,
so service state comes from the engine (``docker ps`` by the project label both versions
put on containers, then ``docker inspect``). Images are pulled only when the engine lacks
them (``docker image inspect`` first): an install never reaches a registry for an image
that is present. The engine is the one ``DOCKER_HOST`` names (agent.toml's ``docker_host``)
or the CLI's default. Every call has a timeout and errors keep the CLI's last line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.errors import CommandError

PROJECT = "mailu"
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
_detected: tuple[tuple[str, ...], str] | None = None


@dataclass(frozen=True)
class ServiceState:
    """One service's container as the engine reports it."""

    service: str
    state: str  # running, exited, restarting, created, …
    health: str  # healthy, unhealthy, starting, or "" when the image has no healthcheck
    image: str

    @property
    def ready(self) -> bool:
        return self.state == "running" and self.health in ("", "healthy")


async def run(*argv: str, what: str, limit: float) -> str:
    """``argv``'s standard output; a ``CommandError`` with the last line of its errors."""
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except FileNotFoundError:
        raise CommandError(f"{argv[0]} is not installed on this server") from None
    try:
        out, err = await asyncio.wait_for(process.communicate(), limit)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise CommandError(f"{what} did not finish within {limit:.0f} s") from None
    if process.returncode != 0:
        raise CommandError(f"{what} failed: {_reason(err, process.returncode)[:500]}")
    return out.decode(errors="replace")


def detect_compose(timeout: float = 30.0) -> tuple[tuple[str, ...], str] | None:
    """The Compose command this server has and its version (the v2 plugin, else v1), found
    once per process; None when there is neither."""
    global _detected
    if _detected is not None:
        return _detected
    for command in (("docker", "compose"), ("docker-compose",)):
        if shutil.which(command[0], path=os.environ.get("PATH")) is None:
            continue
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            done = subprocess.run(
                [*command, "version", "--short"],
                stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
            )  # fmt: skip
            if done.returncode == 0:
                _detected = (command, done.stdout.strip().removeprefix("v"))
                return _detected
    return None


async def compose_command() -> tuple[tuple[str, ...], str]:
    """``detect_compose``, or a ``CommandError`` saying what to install."""
    found = await asyncio.to_thread(detect_compose)
    if found is None:
        raise CommandError(
            "Docker Compose is not installed on this server (MailU runs under Docker Engine "
            "with 'docker compose' or docker-compose); install it, or create the server with "
            "mail_stack none"
        )
    return found


def compose_command_detected() -> tuple[str, ...]:
    """The Compose command found so far in this process (empty before the first check)."""
    return _detected[0] if _detected else ()


class Compose:
    """The MailU compose project in ``directory`` (``docker-compose.yml`` and ``mailu.env``)."""

    def __init__(self, directory: Path, *, timeout: float = 600.0) -> None:
        self.directory = directory
        self.timeout = timeout
        self.command: tuple[str, ...] = ()

    async def check_engine(self) -> str:
        """The Compose version, or a ``CommandError`` saying what is missing or broken."""
        if shutil.which("docker", path=os.environ.get("PATH")) is None:
            raise CommandError(
                "docker is not installed on this server (MailU runs under Docker Engine with "
                "Compose); install it, or create the server with mail_stack none"
            )
        await self._docker("version", "--format", "{{.Server.Version}}", what="docker engine")
        self.command, version = await compose_command()
        return version

    async def pull_missing(self, images: list[str]) -> list[str]:
        """Pull the images the engine lacks (in order); the ones pulled."""
        pulled = []
        for image in dict.fromkeys(images):
            try:
                await self._docker("image", "inspect", "--format", "{{.Id}}", image, what="image")
                continue
            except CommandError:
                pass  # not on this engine
            await self._docker("pull", "--quiet", image, what=f"docker pull {image}")
            pulled.append(image)
        return pulled

    async def up(self) -> None:
        """Create or update the services; Compose recreates only those whose config changed."""
        await self._compose("up", "--detach", "--remove-orphans")

    async def down(self) -> None:
        await self._compose("down", "--remove-orphans")

    async def restart(self, *services: str) -> None:
        await self._compose("restart", *services)

    async def ps(self) -> list[ServiceState]:
        """The project's containers, read from the engine (the same for both Composes)."""
        ids = await self._docker(
            "ps", "--all", "--quiet", "--no-trunc", "--filter", f"label={PROJECT_LABEL}={PROJECT}",
            what="docker ps",
        )  # fmt: skip
        if not ids.split():
            return []
        out = await self._docker("inspect", *ids.split(), what="docker inspect")
        return [_service(entry) for entry in json.loads(out) if isinstance(entry, dict)]

    async def exec(self, service: str, *argv: str) -> str:
        return await self._compose("exec", "-T", service, *argv)

    async def _compose(self, *args: str) -> str:
        if not self.command:
            self.command, _ = await compose_command()
        return await run(
            *self.command,
            "--project-name", PROJECT,
            "--project-directory", str(self.directory),
            "--file", str(self.directory / "docker-compose.yml"),
            *args,
            what=f"{' '.join(self.command)} {args[0]}",
            limit=self.timeout,
        )  # fmt: skip

    async def _docker(self, *args: str, what: str) -> str:
        return await run("docker", *args, what=what, limit=self.timeout)


def _reason(err: bytes, code: int | None) -> str:
    """The error's last telling line: Compose v1 ends with a summary that names nothing
    ("Encountered errors while bringing up the project."), the cause is above it."""
    lines = [line.strip() for line in err.decode(errors="replace").splitlines() if line.strip()]
    telling = [line for line in lines if "Encountered errors while" not in line]
    return (telling or lines or [f"exit status {code}"])[-1]


def _service(entry: dict[str, Any]) -> ServiceState:
    config = entry.get("Config") or {}
    state = entry.get("State") or {}
    return ServiceState(
        service=str((config.get("Labels") or {}).get(SERVICE_LABEL, "")),
        state=str(state.get("Status", "")).lower(),
        health=str((state.get("Health") or {}).get("Status", "")).lower(),
        image=str(config.get("Image", "")),
    )
