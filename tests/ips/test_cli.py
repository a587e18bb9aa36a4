"""``mailfleet ip …``: the CLI on the test database does what the routes do."""

from __future__ import annotations

import getpass
import json

import pytest

from control_plane.db.engine import Database
from tests.conftest import MakeTenant
from tests.control_plane.cli_fixtures import MakeServer, env, make_server, one_line_error
from tests.ips.addresses import fresh_addresses
from tests.support.cli_runner import invoke_cli_async

# In this process (tests/support/cli_runner.py), once; the services run on both backends.
pytestmark = pytest.mark.postgres_only
__all__ = ["env", "make_server"]


async def ok(*args: str, env: dict[str, str]) -> str:
    result = await invoke_cli_async(*args, env=env)
    assert result.returncode == 0, (args, result.stderr)
    return result.stdout


async def test_register_warm_pause_allowance_remove(
    env: dict[str, str], db: Database, make_tenant: MakeTenant, make_server: MakeServer
) -> None:
    tenant = await make_tenant()
    server = str(await make_server(tenant.id, "cli-ips"))
    main, extra = fresh_addresses(2)
    await ok("ip", "add", server, "--address", main, env=env)
    added = json.loads(await ok("ip", "add", server, "--address", extra, "--json", env=env))
    assert added["role"] == "standby" and added["events"][0]["actor"] == "control-plane"

    warm = await ok("ip", "warmup", extra, "--plan", "custom", "--caps", "5,10", "--json", env=env)
    assert json.loads(warm)["warmup"]["today_cap"] == 5
    assert "paused" in await ok("ip", "pause", main, "--reason", "complaints", env=env)
    refused = await invoke_cli_async("ip", "warmup", extra, "--plan", "custom", env=env)
    one_line_error(refused, 2, "daily caps")

    held = json.loads(await ok("ip", "allowance", extra, "--json", env=env))
    assert (held["cap"], held["remaining"], held["paused"]) == (5, 5, False)
    listed = await ok("ip", "list", "--server", server, "--paused", "--json", env=env)
    shown = json.loads(listed)
    assert [ip["address"] for ip in shown] == [main]
    assert shown[0]["pause"]["by"] == f"{getpass.getuser()} (cli)"
    assert "custom: day 1/2, cap 5" in await ok("ip", "list", "--server", server, env=env)
    kept = await invoke_cli_async("ip", "remove", server, main, env=env)
    one_line_error(kept, 2, "sending address")

    await ok("ip", "remove", server, extra, env=env)
    assert "resumed" in await ok("ip", "resume", main, env=env)
    gone = await invoke_cli_async("ip", "show", extra, env=env)
    one_line_error(gone, 2, "not found")
