"""End-to-end fixtures: a real `mailfleet serve` per test, on each database backend."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path

import pytest

from control_plane.db.engine import Database
from tests.support.openbao import DevOpenBao
from tests.support.stack import ControlPlane, control_plane

PlaneFactory = Callable[..., ControlPlane]


@pytest.fixture
def plane_factory(
    tmp_path: Path, openbao: DevOpenBao, database_url: str, db: Database
) -> Iterator[PlaneFactory]:
    """Start a control plane with extra MAILFLEET_* settings; stopped after the test."""
    with ExitStack() as stack:

        def start(**settings: str) -> ControlPlane:
            started: AbstractContextManager[ControlPlane] = control_plane(
                tmp_path, openbao, database_url, **settings
            )
            return stack.enter_context(started)

        yield start


@pytest.fixture
def plane(plane_factory: PlaneFactory) -> ControlPlane:
    return plane_factory()
