"""``mailfleet server usage``: the CLI on the test database prints the export the API
streams, a table of summaries, and one line for a bad step."""

from __future__ import annotations

import httpx
import pytest

from control_plane.db.engine import Database
from tests.conftest import MakeTenant
from tests.control_plane.cli_fixtures import MakeServer, env, make_server, one_line_error
from tests.support.cli_runner import invoke_cli_async
from tests.usage.test_usage_api import SERIES, hourly_history

# In this process (tests/support/cli_runner.py: the same exit code, lines and writes as a
# `mailfleet` process, without its start-up), once, on PostgreSQL; the service is tested on
# both backends.
pytestmark = pytest.mark.postgres_only

__all__ = ["env", "make_server"]  # fixtures, used by name


async def test_server_usage_cli(
    env: dict[str, str],
    client: httpx.AsyncClient,
    db: Database,
    make_tenant: MakeTenant,
    make_server: MakeServer,
) -> None:
    tenant = await make_tenant()
    server_id = await make_server(tenant.id, "usage-cli")
    start, end = await hourly_history(db, tenant.id, server_id, 30)
    span = ("--from", start.isoformat(), "--to", end.isoformat(), "--step", "1h")

    exported = await invoke_cli_async("server", "usage", "usage-cli", *span, "--csv", env=env)
    assert exported.returncode == 0, exported.stderr
    api = await client.get(
        f"/api/v1/servers/{server_id}/usage",
        params={"from": start.isoformat(), "to": end.isoformat(), "step": "1h", "format": "csv"},
        headers=tenant.headers,
    )
    assert exported.stdout == api.text and exported.stdout.count("\n") == 1 + 30 * (len(SERIES) + 2)

    table = await invoke_cli_async(
        "server", "usage", str(server_id), *span, env={**env, "COLUMNS": "200"}
    )
    assert table.returncode == 0, table.stderr
    assert "step 1h" in table.stdout and "fs_used_percent:/" in table.stdout

    refused = await invoke_cli_async("server", "usage", "usage-cli", "--step", "2h", env=env)
    one_line_error(refused, 2, "--step")  # in process: tests/support/cli_runner.py
