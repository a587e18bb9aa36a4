"""``mailu.install``, ``mailu.status`` and ``mailu.uninstall``: MailU's compose project on
the VPS, under ``<root>/mailu``.

Install is idempotent: the files are rendered and compared with what is there; when they
are the same and every service is up and healthy, nothing is touched. When something
changed, the new files replace the old ones atomically and ``docker compose up`` recreates
only the services whose configuration changed (Compose compares each service's config).
Docker is checked before anything is written; only images the engine lacks are pulled; a
failed pull or start puts the previous files back and starts their services again (on a
first install, removes what Compose created and the files): nothing half-written is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.config import under_root
from agent.errors import CommandError
from agent.files import write_atomically
from agent.mailu.compose import Compose, ServiceState, compose_command_detected
from agent.mailu.render import data_directories, render_compose, render_env
from agent.mailu.spec import parse_spec

_yaml: Any = importlib.import_module("yaml")  # untyped library, imported by name
MAILU_DIR = Path("/mailu")
COMPOSE_FILE = "docker-compose.yml"
ENV_FILE = "mailu.env"
Progress = Callable[[int, str], None]


def mailu_dir(root: Path) -> Path:
    return under_root(root, MAILU_DIR)


async def install(root: Path, payload: dict[str, Any], progress: Progress) -> dict[str, Any]:
    spec = parse_spec(payload)
    directory = mailu_dir(root)
    compose = Compose(directory)
    progress(5, "checking docker")
    engine = await compose.check_engine()
    wanted = {
        COMPOSE_FILE: (render_compose(spec, directory), 0o644),
        ENV_FILE: (render_env(spec), 0o600),
    }
    previous = {name: _read(directory / name) for name in wanted}
    changed = sorted(name for name, (text, _) in wanted.items() if previous[name] != text)
    services = _services(wanted[COMPOSE_FILE][0])
    if not changed:
        states = await compose.ps()
        if _all_ready(states, services):
            progress(100, "MailU is installed and healthy; nothing changed")
            return _result(spec.version, engine, changed, states)
    progress(15, "writing configuration" if changed else "configuration unchanged")
    await asyncio.to_thread(_lay_out, directory, wanted, data_directories(spec))
    started = False
    try:
        progress(25, f"pulling the MailU {spec.version} images this server lacks")
        pulled = await compose.pull_missing(_images(wanted[COMPOSE_FILE][0]))
        progress(60, "starting services")
        started = True
        await compose.up()
    except CommandError:
        await _put_back(compose, directory, previous, started)
        raise
    timeout = float(payload.get("health_timeout_seconds", 300))
    states = await _wait_ready(compose, services, timeout, progress)
    progress(100, "MailU is running and healthy")
    return {**_result(spec.version, engine, changed, states), "pulled_images": pulled}


async def status(root: Path, payload: dict[str, Any], progress: Progress) -> dict[str, Any]:
    directory = mailu_dir(root)
    if not (directory / COMPOSE_FILE).exists():
        return {"installed": False, "services": {}}
    compose = Compose(directory, timeout=60)
    states = await compose.ps()
    queue: int | None = None
    if any(s.service == "smtp" and s.state == "running" for s in states):
        # postqueue -j prints one JSON object per queued message
        out = await compose.exec("smtp", "postqueue", "-j")
        queue = sum(1 for line in out.splitlines() if line.strip())
    return {
        "installed": True,
        "services": {s.service: _describe(s) for s in states},
        "healthy": _all_ready(states, _services(_read(directory / COMPOSE_FILE) or "")),
        "queue_size": queue,
    }


async def uninstall(root: Path, payload: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Stop and remove the containers and MailFleet's files; the mail data stays unless
    ``purge_data`` is true."""
    directory = mailu_dir(root)
    if (directory / COMPOSE_FILE).exists():
        progress(20, "stopping MailU")
        await Compose(directory).check_engine()
        await Compose(directory).down()
    for name in (COMPOSE_FILE, ENV_FILE):
        (directory / name).unlink(missing_ok=True)
    purged = payload.get("purge_data") is True
    if purged and directory.exists():
        await asyncio.to_thread(shutil.rmtree, directory)
    return {"uninstalled": True, "data_purged": purged}


def _services(compose_text: str) -> set[str]:
    document = _yaml.safe_load(compose_text) if compose_text else None
    return set((document or {}).get("services", {}))


def _images(compose_text: str) -> list[str]:
    document = _yaml.safe_load(compose_text) or {}
    return [str(service["image"]) for service in document.get("services", {}).values()]


async def _put_back(
    compose: Compose, directory: Path, previous: dict[str, str | None], started: bool
) -> None:
    """After a failed pull or start: the previous files and, when the start had begun,
    their services running again (best effort); on a first install, whatever Compose
    created removed, then the files. A failed pull touched no container."""
    first = previous.get(COMPOSE_FILE) is None
    with contextlib.suppress(CommandError):
        if first and started:
            await compose.down()
    await asyncio.to_thread(_restore, directory, previous)
    with contextlib.suppress(CommandError):
        if started and not first:
            await compose.up()


def _all_ready(states: list[ServiceState], services: set[str]) -> bool:
    ready = {s.service for s in states if s.ready}
    return bool(services) and services <= ready


async def _wait_ready(
    compose: Compose, services: set[str], limit: float, progress: Progress
) -> list[ServiceState]:
    deadline = time.monotonic() + limit
    while True:
        states = await compose.ps()
        if _all_ready(states, services):
            return states
        unhealthy = sorted(s.service for s in states if s.health == "unhealthy")
        if unhealthy:
            raise CommandError(f"MailU services report unhealthy: {', '.join(unhealthy)}")
        stopped = sorted(s.service for s in states if s.state in ("exited", "dead"))
        if stopped:
            raise CommandError(f"MailU services stopped: {', '.join(stopped)}")
        waiting = sorted(services - {s.service for s in states if s.ready})
        if time.monotonic() >= deadline:
            raise CommandError(
                f"MailU services not healthy within {limit:.0f} s: {', '.join(waiting)}"
            )
        progress(80, f"waiting for {', '.join(waiting)}")
        await asyncio.sleep(1.0)


def _result(
    version: str, engine: str, changed: list[str], states: list[ServiceState]
) -> dict[str, Any]:
    return {
        "version": version,
        "compose_version": engine,
        "compose_command": " ".join(compose_command_detected()),
        "changed_files": changed,
        "services": {s.service: _describe(s) for s in states},
    }


def _describe(state: ServiceState) -> dict[str, str]:
    return {"state": state.state, "health": state.health or "none", "image": state.image}


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def _lay_out(
    directory: Path, files: dict[str, tuple[str, int]], subdirectories: tuple[str, ...]
) -> None:
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    for sub in subdirectories:
        (directory / sub).mkdir(mode=0o755, parents=True, exist_ok=True)
    for name, (text, mode) in files.items():
        write_atomically(directory / name, text, mode)


def _restore(directory: Path, previous: dict[str, str | None]) -> None:
    for name, text in previous.items():
        if text is None:
            (directory / name).unlink(missing_ok=True)
        else:
            write_atomically(directory / name, text, 0o600 if name == ENV_FILE else 0o644)
