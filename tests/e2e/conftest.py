"""End-to-end fixtures: a real `mailfleet serve` per test, on each database backend."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path

import pytest

from control_plane.db.engine import Database
from tests.e2e.local import LocalNet
from tests.support.docker_engine import sweep_vps_engines
from tests.support.netns import netns_unavailable, pick_subnet, sweep
from tests.support.openbao import DevOpenBao
from tests.support.stack import ControlPlane, control_plane

PlaneFactory = Callable[..., ControlPlane]


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """End-to-end runs happen once, on PostgreSQL (the production database): they are marked
    ``postgres_only``, whose SQLite variants the root conftest deselects. SQLite's own paths
    are covered by the database tests and by the embedded-default runs (test_serve,
    test_readme), which make their own file."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.postgres_only)


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


@pytest.fixture(scope="module")
def shared_plane(
    tmp_path_factory: pytest.TempPathFactory, openbao: DevOpenBao, database_url: str, db: Database
) -> Iterator[ControlPlane]:
    """One control plane for a module's tests that neither stop it nor change its settings
    (a serve start is seconds of CPU; each test still makes its own tenant and servers)."""
    with control_plane(tmp_path_factory.mktemp("plane"), openbao, database_url) as started:
        yield started


@pytest.fixture
def local_net(tmp_path: Path) -> Iterator[LocalNet]:
    reason = netns_unavailable()
    if reason is not None:
        pytest.skip(reason)
    prefix = "p" + secrets.token_hex(2)
    net = LocalNet(prefix, f"{prefix}br", pick_subnet(), tmp_path / "local-provider")
    try:
        yield net
    finally:
        problems = [p for p in net.leftovers() if not p.startswith(f"link {net.bridge}")]
        problems += sweep_vps_engines(prefix, net.state_dir)  # MailU's containers, if any
        sweep(prefix)
    if problems:
        pytest.fail("left behind after the test: " + "; ".join(problems))


@pytest.fixture
def local_plane(local_net: LocalNet, plane_factory: PlaneFactory) -> ControlPlane:
    """A control plane offering the local provider (set up after, torn down before, the net)."""
    return plane_factory(**local_net.settings())
