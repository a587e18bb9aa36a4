"""``mailfleet server health``: the CLI on the test database shows what the API shows,
and ``--run`` checks now through the same Checker as ``POST …/health/run``."""

from __future__ import annotations

import getpass
import json
import uuid

import httpx
import pytest
from sqlalchemy import select

from control_plane.db.engine import Database
from control_plane.health.models import HealthCheck
from tests.conftest import MakeTenant
from tests.control_plane.cli_fixtures import MakeServer, env, make_server, one_line_error
from tests.support.cli_runner import invoke_cli_async

# In this process (tests/support/cli_runner.py: the same exit code, lines and writes as a
# `mailfleet` process, without its start-up), once, on PostgreSQL; the services they call
# are tested on both backends.
pytestmark = pytest.mark.postgres_only

__all__ = ["env", "make_server"]  # fixtures, used by name


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

    before = await invoke_cli_async("server", "health", name, "--json", env=env)
    assert before.returncode == 0, before.stderr
    assert json.loads(before.stdout) == (await client.get(api, headers=tenant.headers)).json()
    assert json.loads(before.stdout)["overall"] == "unknown"  # nothing has run yet

    ran = await invoke_cli_async("server", "health", name, "--run", "--json", env=env)
    assert ran.returncode == 0, ran.stderr
    body = json.loads(ran.stdout)
    link = next(r for r in body.pop("results") if r["check"] == "agent.link")
    assert (link["state"], link["severity"]) == ("ok", "info")
    assert body == (await client.get(api, headers=tenant.headers)).json()  # stored, as shown
    checks = {c["check"]: c for c in body["checks"]}
    assert checks["agent.link"]["state"] == "ok"
    assert checks["memory"]["state"] == "unknown"  # no samples: could not check, never ok
    assert body["last_run_at"] is not None

    table = await invoke_cli_async("server", "health", str(server_id), env={**env, "COLUMNS": "80"})
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
    for args, message in cases:
        one_line_error(await invoke_cli_async(*args, env=env), 2, message)
    async with db.session() as session:
        rows = await session.scalars(select(HealthCheck).where(HealthCheck.server_id == enrolling))
        assert rows.all() == []
