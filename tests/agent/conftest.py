"""One real Docker engine for the agent's MailU tests: a namespace with the VPS's address,
a dockerd in it and the stand-in images, shared by the session (each test removes its
containers); the agent's code runs inside the namespace (``MailuEngine.run``)."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Coroutine, Iterator
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
from tests.support.mailu_images import import_stand_ins

VPS_ADDRESS = "198.18.1.7"
T = TypeVar("T")


@dataclass
class MailuEngine:
    namespace: str
    engine: DockerEngine

    async def run(self, work: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """``work()`` as the VPS's agent runs it: in the namespace, talking to its engine."""
        return await asyncio.to_thread(run_in_namespace, self.namespace, work)


@pytest.fixture(scope="session")
def mailu_engine_session() -> Iterator[MailuEngine]:
    reason = engine_unavailable()
    if reason:
        pytest.skip(reason)
    namespace = f"mfdk-{secrets.token_hex(3)}"
    directory = Path(tempfile.mkdtemp(prefix="mfdk-"))
    make_namespace(namespace, (VPS_ADDRESS,))
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
