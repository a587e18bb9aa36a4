"""``docker compose`` for the MailU project, through the Docker CLI (Compose v2 plugin).

Every call has a timeout and its output is kept short in errors. The CLI is what a VPS has
and what an admin would type; the Docker Engine API would add a dependency and a second way
to do what ``docker compose`` already does (project naming, recreate-on-change, health).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.errors import CommandError

PROJECT = "mailu"


@dataclass(frozen=True)
class ServiceState:
    """One service as ``docker compose ps`` reports it."""

    service: str
    state: str  # running, exited, restarting, created, …
    health: str  # healthy, unhealthy, starting, or "" when the image has no healthcheck
    image: str

    @property
    def ready(self) -> bool:
        return self.state == "running" and self.health in ("", "healthy")


class Compose:
    """The MailU compose project in ``directory`` (``docker-compose.yml`` and ``mailu.env``)."""

    def __init__(self, directory: Path, *, timeout: float = 600.0) -> None:
        self.directory = directory
        self.timeout = timeout

    async def check_engine(self) -> str:
        """The Compose version, or a ``CommandError`` saying what is missing or broken."""
        docker = shutil.which("docker", path=os.environ.get("PATH"))
        if docker is None:
            raise CommandError(
                "docker is not installed on this server (MailU runs under Docker Engine with "
                "the Compose v2 plugin); install it, or create the server with mail_stack none"
            )
        await self._docker("version", "--format", "{{.Server.Version}}", what="docker engine")
        version = await self._docker("compose", "version", "--short", what="docker compose")
        return version.strip()

    async def pull(self) -> None:
        await self._compose("pull", "--quiet")

    async def up(self) -> None:
        """Create or update the services; Compose recreates only those whose config changed."""
        await self._compose("up", "--detach", "--remove-orphans")

    async def down(self) -> None:
        await self._compose("down", "--remove-orphans")

    async def restart(self, *services: str) -> None:
        await self._compose("restart", *services)

    async def ps(self) -> list[ServiceState]:
        out = await self._compose("ps", "--all", "--format", "json")
        return [_service(entry) for entry in _json_entries(out)]

    async def exec(self, service: str, *argv: str) -> str:
        return await self._compose("exec", "-T", service, *argv)

    async def _compose(self, *args: str) -> str:
        return await self._docker(
            "compose",
            "--project-name", PROJECT,
            "--project-directory", str(self.directory),
            "--file", str(self.directory / "docker-compose.yml"),
            *args,
            what=f"docker compose {args[0]}",
        )  # fmt: skip

    async def _docker(self, *args: str, what: str) -> str:
        try:
            process = await asyncio.create_subprocess_exec(
                "docker",
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except FileNotFoundError:
            raise CommandError("docker is not installed on this server") from None
        try:
            out, err = await asyncio.wait_for(process.communicate(), self.timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            raise CommandError(f"{what} did not finish within {self.timeout:.0f} s") from None
        if process.returncode != 0:
            lines = [line for line in err.decode(errors="replace").splitlines() if line.strip()]
            reason = lines[-1].strip() if lines else f"exit status {process.returncode}"
            raise CommandError(f"{what} failed: {reason[:500]}")
        return out.decode(errors="replace")


def _json_entries(text: str) -> list[dict[str, Any]]:
    """Compose ≥ 2.21 prints one JSON object per line; older versions print one array."""
    text = text.strip()
    if not text:
        return []
    if text.startswith("["):
        entries = json.loads(text)
    else:
        entries = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [e for e in entries if isinstance(e, dict)]


def _service(entry: dict[str, Any]) -> ServiceState:
    return ServiceState(
        service=str(entry.get("Service", "")),
        state=str(entry.get("State", "")).lower(),
        health=str(entry.get("Health", "")).lower(),
        image=str(entry.get("Image", "")),
    )
