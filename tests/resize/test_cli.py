"""``mailfleet server recommendations|resize``: the CLI on the test database, with
Hostwinds (the contract double) configured in Vault; refusals are one line, exit 2."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select

from control_plane.db.engine import Database
from control_plane.provisioning.registry import HOSTWINDS_SECRET
from control_plane.resize.models import ServerResize
from control_plane.vault.client import Vault
from tests.conftest import MakeTenant
from tests.control_plane.cli_fixtures import one_line_error
from tests.fakes.hostwinds import HostwindsDouble, hostwinds_double
from tests.resize.fixtures import API_KEY, PLANS, hostwinds_server, usage
from tests.support.cli_runner import invoke_cli_async
from tests.support.openbao import DevOpenBao

# In this process (tests/support/cli_runner.py: the same exit code, lines and writes as a
# `mailfleet` process, without its start-up), once, on PostgreSQL; the services they call
# are tested on both backends.
pytestmark = pytest.mark.postgres_only


@pytest.fixture
def api() -> Iterator[HostwindsDouble]:
    with hostwinds_double(api_key=API_KEY, plans=PLANS) as double:
        yield double


@pytest_asyncio.fixture
async def env(
    database_url: str, db: Database, tmp_path: Path, openbao: DevOpenBao, vault: Vault,
    api: HostwindsDouble,
) -> AsyncIterator[dict[str, str]]:  # fmt: skip
    token = tmp_path / "token"
    token.write_text(openbao.token)
    await vault.put(
        HOSTWINDS_SECRET,
        {"api_key": API_KEY, "template": "debian-12", "regions": "2=Dallas", "base_url": api.url},
    )
    try:
        yield {
            "MAILFLEET_DATABASE_URL": database_url,
            "MAILFLEET_HOME": str(tmp_path / "home"),
            "MAILFLEET_VAULT_ADDR": openbao.url,
            "MAILFLEET_VAULT_TOKEN_FILE": str(token),
            "COLUMNS": "200",
        }
    finally:
        await vault.delete(HOSTWINDS_SECRET)


async def test_recommendations_and_a_dry_run_resize(
    env: dict[str, str],
    client: httpx.AsyncClient,
    db: Database,
    make_tenant: MakeTenant,
    api: HostwindsDouble,
) -> None:
    tenant = await make_tenant()
    server_id, _ = await hostwinds_server(client, tenant, db, api, rid=12)
    await usage(db, tenant, server_id, hours=48, cpu=30, memory_gib=5, disk_gib=30)
    ident = str(server_id)

    shown = await invoke_cli_async("server", "recommendations", ident, "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    body = json.loads(shown.stdout)
    assert (body["state"], body["recommended_plan"]["id"], body["driver"]) == (
        "resize", "13", "memory"
    ), body  # fmt: skip
    api_view = await client.get(f"/api/v1/servers/{ident}/recommendations", headers=tenant.headers)
    assert {k: v for k, v in body.items() if k != "evidence"} == {
        k: v for k, v in api_view.json().items() if k != "evidence"
    }

    preview = await invoke_cli_async("server", "resize", ident, "13", "--dry-run", env=env)
    assert preview.returncode == 0, preview.stderr
    for words in ("+17.00 USD/month (up)", "34.99 USD", "restart", "confirm", "revert"):
        assert words in preview.stdout, preview.stdout
    refused = await invoke_cli_async("server", "resize", ident, "99", env=env)
    one_line_error(refused, 2, "unknown plan '99'")
    async with db.session() as session:
        made = await session.scalar(select(ServerResize).where(ServerResize.server_id == server_id))
    assert made is None and not [c for c in api.calls if "upgrade" in c.action]
