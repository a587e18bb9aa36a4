"""``mailfleet server health``: the real CLI on the test database shows what the API shows,
and ``--run`` checks now through the same Checker as ``POST …/health/run``."""

from __future__ import annotations

import asyncio
import getpass
import json
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import delete, select

from control_plane.db.base import utcnow
from control_plane.db.engine import Database
from control_plane.health.models import HealthCheck
from control_plane.servers.models import Server
from tests.conftest import MakeTenant
from tests.support.processes import run_cli

MakeServer = Callable[..., Coroutine[Any, Any, uuid.UUID]]


@pytest.fixture
def env(database_url: str, db: Database, tmp_path: Path) -> dict[str, str]:
    return {"MAILFLEET_DATABASE_URL": database_url, "MAILFLEET_HOME": str(tmp_path / "home")}


@pytest_asyncio.fixture
async def make_server(db: Database) -> AsyncIterator[MakeServer]:
    """Servers straight in the database, deleted after the test (with their health rows)
    so no other test's sweep finds them."""
    made: list[uuid.UUID] = []

    async def make(tenant_id: str, name: str, state: str = "ready") -> uuid.UUID:
        async with db.session() as session:
            server = Server(
                tenant_id=uuid.UUID(tenant_id),
                name=name,
                provider="manual",
                state=state,
                mail_stack="none",
                agent_state="enrolled",
                last_heartbeat_at=utcnow(),
            )
            session.add(server)
            await session.flush()
            made.append(server.id)
            return server.id

    yield make
    async with db.session() as session:
        await session.execute(delete(Server).where(Server.id.in_(made)))


def one_line_error(result: Any, code: int, message: str) -> None:
    assert result.returncode == code, result
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines


async def test_server_health_by_name_or_id_matches_the_api_and_runs_checks(
    env: dict[str, str],
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    make_tenant: MakeTenant,
    make_server: MakeServer,
) -> None:
    tenant = await make_tenant()
    name = f"mx-{uuid.uuid4().hex[:8]}"
    server_id = await make_server(tenant.id, name)
    api = f"/api/v1/servers/{server_id}/health"

    before = run_cli("server", "health", name, "--json", env=env)
    assert before.returncode == 0, before.stderr
    assert json.loads(before.stdout) == (await client.get(api, headers=tenant.headers)).json()
    assert json.loads(before.stdout)["overall"] == "unknown"  # nothing has run yet

    ran = run_cli("server", "health", name, "--run", "--json", env=env)
    assert ran.returncode == 0, ran.stderr
    body = json.loads(ran.stdout)
    link = next(r for r in body.pop("results") if r["check"] == "agent.link")
    assert (link["state"], link["severity"]) == ("ok", "info")
    assert body == (await client.get(api, headers=tenant.headers)).json()  # stored, as shown
    checks = {c["check"]: c for c in body["checks"]}
    assert checks["agent.link"]["state"] == "ok"
    assert checks["memory"]["state"] == "unknown"  # no samples: could not check, never ok
    assert body["last_run_at"] is not None

    table = run_cli("server", "health", str(server_id), env={**env, "COLUMNS": "80"})
    assert table.returncode == 0, table.stderr
    assert table.stdout.startswith(f"overall: {body['overall']} (last run ")
    assert "agent.link" in table.stdout
    for column in ("check", "state", "severity", "detail", "observed", "threshold", "last run"):
        assert column in table.stdout

    audit = await client.get(
        "/api/v1/audit-events",
        params={"object_type": "server", "object_id": str(server_id)},
        headers=admin_headers,
    )
    (event,) = audit.json()["items"]  # the run wrote; the reads did not
    assert (event["action"], event["actor_kind"], event["user"]) == (
        "server.health",
        "cli",
        getpass.getuser(),
    )
    assert event["tenant_id"] == tenant.id


async def test_server_health_bad_input_is_one_line_and_writes_nothing(
    env: dict[str, str], db: Database, make_tenant: MakeTenant, make_server: MakeServer
) -> None:
    first, second = await make_tenant(), await make_tenant()
    twin = f"twin-{uuid.uuid4().hex[:8]}"
    await make_server(first.id, twin)
    await make_server(second.id, twin)
    enrolling = await make_server(first.id, f"new-{uuid.uuid4().hex[:8]}", state="enrolling")
    missing = str(uuid.uuid4())
    cases = [
        (("server", "health", "nope-x1"), "server 'nope-x1' not found"),
        (("server", "health", missing, "--run"), f"server {missing} not found"),
        (("server", "health", twin), f"more than one server is named '{twin}'"),
        (
            ("server", "health", str(enrolling), "--run"),
            f"server {enrolling} is enrolling; its health is checked once it is ready",
        ),
    ]
    results = await asyncio.gather(
        *(asyncio.to_thread(run_cli, *args, env=env) for args, _ in cases)
    )
    for result, (_, message) in zip(results, cases, strict=True):
        one_line_error(result, 2, message)
    async with db.session() as session:
        rows = await session.scalars(select(HealthCheck).where(HealthCheck.server_id == enrolling))
        assert rows.all() == []
