"""``mailfleet costs``: the CLI on the test database prints the CSV the API streams,
a table with the month's projection, and one line for bad input."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from control_plane.db.engine import Database
from tests.conftest import MakeTenant
from tests.control_plane.cli_fixtures import env, one_line_error
from tests.costs.scenario import play_month
from tests.support.cli_runner import invoke_cli_async

# In this process (tests/support/cli_runner.py: the same exit code, lines and writes as a
# `mailfleet` process, without its start-up), once, on PostgreSQL; the report is tested on
# both backends.
pytestmark = pytest.mark.postgres_only

__all__ = ["env"]  # a fixture, used by name
NOVEMBER = {"from": "2026-11-01T00:00:00Z", "to": "2026-12-01T00:00:00Z"}


async def test_costs_cli(
    env: dict[str, str], client: httpx.AsyncClient, db: Database, make_tenant: MakeTenant
) -> None:
    tenant = await make_tenant()
    month = await play_month(db, uuid.UUID(tenant.id))
    scope = ("--tenant", tenant.id, "--month", "2026-11")

    exported = await invoke_cli_async("costs", *scope, "--format", "csv", env=env)
    assert exported.returncode == 0, exported.stderr
    api = await client.get(
        "/api/v1/costs", params={**NOVEMBER, "format": "csv"}, headers=tenant.headers
    )
    assert exported.stdout == api.text and "idle / unallocated" in api.text

    table = await invoke_cli_async(
        "costs", *scope, "--workspace", "A", "--group-by", "server", env={**env, "COLUMNS": "200"}
    )
    assert table.returncode == 0, table.stderr
    assert f"s1-{month.provider}" in table.stdout and "projected to month end" in table.stdout
    as_json = await invoke_cli_async("costs", *scope, "--format", "json", env=env)
    body = json.loads(as_json.stdout)
    assert body["workspace_id"] is None and body["month"] == "2026-11-01"

    # Refusals in process (tests/support/cli_runner.py): one line, exit 2, as from a process.
    refusals = [
        (("costs", "--month", "November"), "--month"),
        (("costs", "--group-by", "planet"), "--group-by"),
        (("costs", *scope, "--workspace", "nobody"), "workspace"),
    ]
    for args, message in refusals:
        one_line_error(await invoke_cli_async(*args, env=env), 2, message)
