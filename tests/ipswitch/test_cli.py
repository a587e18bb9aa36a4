"""``mailfleet ip-switch``: the CLI on the test database starts a switch the API then
shows, lists and shows it; refusals are one line naming the flag, exit 2."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from control_plane.db.base import utcnow
from control_plane.db.engine import Database
from control_plane.ips import service as ips
from control_plane.servers.models import Server
from tests.conftest import MakeTenant
from tests.control_plane.cli_fixtures import MakeServer, env, make_server, one_line_error
from tests.ips.addresses import fresh_addresses
from tests.support.cli_runner import invoke_cli_async

# In this process (tests/support/cli_runner.py: the same exit code, lines and writes as a
# `mailfleet` process, without its start-up), once, on PostgreSQL; the services they call
# are tested on both backends.
pytestmark = pytest.mark.postgres_only

__all__ = ["env", "make_server"]  # fixtures, used by name


async def test_start_list_and_show_match_the_api(
    env: dict[str, str],
    client: httpx.AsyncClient,
    db: Database,
    make_tenant: MakeTenant,
    make_server: MakeServer,
) -> None:
    tenant = await make_tenant()
    name = f"mx-{uuid.uuid4().hex[:8]}"
    server_id = await make_server(tenant.id, name)
    main, extra = fresh_addresses(2)
    async with db.session() as session:
        server = await session.get(Server, server_id)
        assert server is not None
        await ips.sync_server(session, server, [main, extra], utcnow())

    refused = await invoke_cli_async("ip-switch", "start", name, "--to", main, env=env)
    one_line_error(refused, 2, f"--to: {main} is already the sending address")

    started = await invoke_cli_async("ip-switch", "start", name, "--to", extra, "--json", env=env)
    assert started.returncode == 0, started.stderr
    body = json.loads(started.stdout)
    assert (body["from_ip"], body["to_ip"], body["state"]) == (main, extra, "running")
    assert body["requested_by"].endswith("(cli)")
    api = f"/api/v1/servers/{server_id}/ip-switches/{body['id']}"
    assert body == (await client.get(api, headers=tenant.headers)).json()

    listed = await invoke_cli_async("ip-switch", "list", str(server_id), "--json", env=env)
    assert [s["id"] for s in json.loads(listed.stdout)] == [body["id"]]
    shown = await invoke_cli_async(
        "ip-switch", "show", name, body["id"], env={**env, "COLUMNS": "200"}
    )
    assert shown.returncode == 0, shown.stderr
    for word in ("preconditions", "withdraw", "running", extra):
        assert word in shown.stdout
