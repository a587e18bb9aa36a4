"""One real Docker engine for the agent's MailU tests: a namespace with the VPS's address,
a dockerd in it and the stand-in images, shared by the session (each test removes its
containers); the agent's code runs inside the namespace (``MailuEngine.run``)."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.support.docker_engine import (
    DockerEngine,
    delete_namespace,
    engine_unavailable,
    make_namespace,
    run_in_namespace,
    start_engine,
)
from tests.support.mailu_images import api_double, import_stand_ins

VPS_ADDRESS = "198.18.1.7"
NEW_ADDRESS = "198.18.1.8"  # a second VPS's, for recovery onto a new address
T = TypeVar("T")
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
    "bind_address": VPS_ADDRESS,
    "health_timeout_seconds": 90,  # an upper bound: a loaded machine starts containers slowly
    **SECRETS,
}
Handler = Callable[[Path, dict[str, Any], Callable[[int, str], None]], Awaitable[dict[str, Any]]]


def quiet(percent: int, message: str) -> None:
    pass


@dataclass
class MailuEngine:
    namespace: str
    engine: DockerEngine

    async def run(self, work: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """``work()`` as the VPS's agent runs it: in the namespace, talking to its engine."""
        return await asyncio.to_thread(run_in_namespace, self.namespace, work)


@contextmanager
def engine_in_a_namespace() -> Iterator[MailuEngine]:
    """A namespace holding the VPS's address, a dockerd in it, the stand-ins imported."""
    reason = engine_unavailable()
    if reason:
        pytest.skip(reason)
    namespace = f"mfdk-{secrets.token_hex(3)}"
    directory = Path(tempfile.mkdtemp(prefix="mfdk-"))
    make_namespace(namespace, (VPS_ADDRESS, NEW_ADDRESS))
    engine = None
    try:
        engine = start_engine(namespace, directory)
        import_stand_ins(engine)
        yield MailuEngine(namespace, engine)
    finally:
        if engine is not None:
            engine.stop()
        delete_namespace(namespace)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def mailu_engine_session() -> Iterator[MailuEngine]:
    with engine_in_a_namespace() as engine:
        yield engine


@dataclass
class InstalledMailu:
    """MailU installed by the agent on its own engine, with the API double behind admin."""

    engine: MailuEngine
    root: Path
    api_state: Path

    async def call(self, handler: Handler, payload: dict[str, Any]) -> dict[str, Any]:
        """A command handler, run as the VPS's agent runs it (in the namespace)."""
        return await self.engine.run(lambda: handler(self.root, payload, quiet))

    def mailu(self) -> dict[str, Any]:
        """What the Mailu API double holds (in MailU's data directory)."""
        path = self.api_state
        return dict(json.loads(path.read_text())) if path.exists() else {}


@pytest.fixture(scope="session")
def mailu_installed_session() -> Iterator[InstalledMailu]:
    """One install shared by the tests of domains, mailboxes, DKIM and certificates (each
    leaves MailU as it found it); its own engine, since the install tests empty theirs."""
    from agent.mailu.install import install

    with engine_in_a_namespace() as engine:
        root = engine.engine.directory / "vps"
        with api_double(engine.namespace, root / "mailu") as state:
            saved = os.environ.get("DOCKER_HOST")
            os.environ["DOCKER_HOST"] = engine.engine.host
            try:
                asyncio.run(install(root, PAYLOAD, quiet))
            finally:
                if saved is None:
                    del os.environ["DOCKER_HOST"]
                else:
                    os.environ["DOCKER_HOST"] = saved
            yield InstalledMailu(engine, root, state)


@pytest.fixture
def mailu_installed(
    mailu_installed_session: InstalledMailu, monkeypatch: pytest.MonkeyPatch
) -> InstalledMailu:
    monkeypatch.setenv("DOCKER_HOST", mailu_installed_session.engine.engine.host)
    return mailu_installed_session


@pytest.fixture
def mailu_engine(
    mailu_engine_session: MailuEngine, monkeypatch: pytest.MonkeyPatch
) -> Iterator[MailuEngine]:
    """The session's engine, empty again after the test; the agent's DOCKER_HOST points
    at it (as agent.toml's ``docker_host`` makes the agent's)."""
    monkeypatch.setenv("DOCKER_HOST", mailu_engine_session.engine.host)
    monkeypatch.setenv("PATH", os.environ.get("PATH", "/usr/bin:/bin"))
    yield mailu_engine_session
    mailu_engine_session.engine.remove_all_containers()
