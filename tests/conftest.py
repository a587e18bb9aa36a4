"""Shared fixtures: database tests run on SQLite and on PostgreSQL; Vault is a real OpenBao."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
import pytest_asyncio

from control_plane.settings import Settings
from tests.support.openbao import DevOpenBao, dev_openbao
from tests.support.postgres import create_database, drop_database

# The app, the database layer and Vault are imported by the fixtures that make them: the
# xdist controller loads this file too and runs no test (the app alone is ~3 s of CPU).
if TYPE_CHECKING:
    from fastapi import FastAPI

    from control_plane.db.engine import Database
    from control_plane.vault.client import Vault
    from control_plane.vault.pki import AgentPki

BACKENDS = ("sqlite", "postgresql")

# Real DNS, ACME and S3 servers (fixtures: knot_primary, knot_pair, pebble, s3_server), and
# loopback alert receivers (receiver, pagerduty, smtp_sink, alert_client, alerting).
pytest_plugins = [
    "tests.support.knot",
    "tests.support.pebble",
    "tests.support.moto",
    "tests.alerts.fixtures",
    "tests.support.ordering",  # known-slow tests first, one at each worker's head
]


def pytest_configure(config: pytest.Config) -> None:
    # The suite must not pick up a developer's own MailFleet settings, nor the home a
    # `mailfleet serve` recorded in their config (nor record its own there).
    for name in [n for n in os.environ if n.startswith("MAILFLEET_")]:
        del os.environ[name]
    os.environ["XDG_CONFIG_HOME"] = tempfile.mkdtemp(prefix="mailfleet-config-")


@pytest.hookimpl(wrapper=True)
def pytest_collection(session: pytest.Session) -> object:
    """Collection keeps its bytecode, pytest's assertion-rewritten test modules among it (as
    `make test`'s compileall keeps the project's): where the environment sets
    PYTHONDONTWRITEBYTECODE, every worker rewrote every test module on every run, about
    4.5 s of CPU per process. The processes the tests start still inherit the setting."""
    saved = sys.dont_write_bytecode
    sys.dont_write_bytecode = False
    try:
        return (yield)
    finally:
        sys.dont_write_bytecode = saved


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``postgres_only`` run once, on PostgreSQL: their SQLite variant is
    deselected (not skipped: nothing is missing). The end-to-end runs are (see
    tests/e2e/conftest.py), and so are tests of PostgreSQL features and multi-process CLI
    runs whose database code the in-process tests cover on both backends."""
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_sqlite = callspec is not None and callspec.params.get("database_url") == "sqlite"
        marked = item.get_closest_marker("postgres_only") is not None
        (dropped if on_sqlite and marked else keep).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(os.environ.get("XDG_CONFIG_HOME", "/nonexistent"), ignore_errors=True)


@pytest.fixture(scope="session")
def openbao() -> Iterator[DevOpenBao]:
    with dev_openbao() as server:
        yield server


@pytest_asyncio.fixture(scope="session")
async def vault(openbao: DevOpenBao) -> AsyncIterator[Vault]:
    from control_plane.vault.client import Vault

    client = Vault(openbao.url, token=openbao.token, kv_mount="mailfleet")
    await client.ensure_kv_mount()
    yield client
    client.close()


async def fresh_database_url(backend: str, directory: Path) -> str:
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{directory / 'mailfleet.db'}"
    return await create_database()


@pytest_asyncio.fixture(scope="session", params=BACKENDS)
async def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    url = await fresh_database_url(request.param, tmp_path_factory.mktemp(request.param))
    yield url
    if request.param == "postgresql":
        await drop_database(url)


@pytest_asyncio.fixture(scope="session")
async def db(database_url: str) -> AsyncIterator[Database]:
    from control_plane.db import migrate
    from control_plane.db.engine import Database

    database = Database(database_url)
    await migrate.upgrade(database)
    yield database
    await database.dispose()


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory, openbao: DevOpenBao) -> Settings:
    return Settings(home=tmp_path_factory.mktemp("home"), vault_addr=openbao.url)


@pytest_asyncio.fixture(scope="session")
async def pki(vault: Vault, settings: Settings) -> AgentPki:
    from control_plane.vault.pki import AgentPki

    agent_pki = AgentPki(vault, settings.vault_pki_mount)
    await agent_pki.ensure(agent_max_ttl_seconds=86_400, gateway_ttl_seconds=86_400)
    return agent_pki


@pytest.fixture(scope="session")
def app(settings: Settings, db: Database, vault: Vault, pki: AgentPki) -> FastAPI:
    from control_plane.api.app import create_app

    return create_app(settings, database=db, vault=vault)


@pytest_asyncio.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://mailfleet.test") as http:
        yield http


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest_asyncio.fixture(scope="session")
async def admin_headers(db: Database) -> dict[str, str]:
    from control_plane.api_keys.service import issue_key

    async with db.session() as session:
        issued = await issue_key(session, scope="admin", tenant_id=None, name="tests")
    return bearer(issued.key)


@dataclass
class TenantHandle:
    """A tenant made through the API, with a key of its own."""

    id: str
    name: str
    key: str
    key_id: str
    headers: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.headers = bearer(self.key)


MakeTenant = Callable[[], Awaitable[TenantHandle]]


@pytest.fixture
def make_tenant(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> MakeTenant:
    counter = iter(range(1_000_000))

    async def make() -> TenantHandle:
        name = f"tenant-{os.urandom(6).hex()}-{next(counter)}"
        response = await client.post("/api/v1/tenants", json={"name": name}, headers=admin_headers)
        assert response.status_code == 201, response.text
        tenant_id = response.json()["id"]
        response = await client.post(
            "/api/v1/api-keys",
            json={"scope": "tenant", "tenant_id": tenant_id, "name": "owner"},
            headers=admin_headers,
        )
        assert response.status_code == 201, response.text
        body = response.json()
        return TenantHandle(id=tenant_id, name=name, key=body["key"], key_id=body["id"])

    return make
