"""The CLI as an operator uses it: real processes, one-line errors, keys alone on stdout."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from control_plane.db import migrate
from control_plane.db.engine import Database
from tests.support.processes import run_cli

KEY = re.compile(r"^mf_(admin|live)_[0-9A-Za-z]{38}\n$")


@pytest.fixture
def env(database_url: str, db: Database) -> dict[str, str]:
    return {"MAILFLEET_DATABASE_URL": database_url}


async def test_keys_made_by_the_cli_work_on_the_api(
    env: dict[str, str], app: FastAPI, client: httpx.AsyncClient
) -> None:
    tenant = run_cli("tenant", "create", f"cli-tenant-{id(env)}", env=env)
    assert tenant.returncode == 0, tenant.stderr
    tenant_id = tenant.stdout.strip()

    admin = run_cli("api-key", "create", "--admin", env=env)
    assert admin.returncode == 0 and KEY.match(admin.stdout), admin
    live = run_cli("api-key", "create", "--tenant", tenant_id, "--name", "ops", env=env)
    assert live.returncode == 0 and KEY.match(live.stdout), live

    as_admin = await client.get(
        f"/api/v1/tenants/{tenant_id}", headers={"Authorization": f"Bearer {admin.stdout.strip()}"}
    )
    assert as_admin.status_code == 200
    as_tenant = await client.get(
        f"/api/v1/tenants/{tenant_id}", headers={"Authorization": f"Bearer {live.stdout.strip()}"}
    )
    assert as_tenant.status_code == 200

    listed = run_cli("api-key", "list", "--tenant", tenant_id, env=env)
    assert listed.returncode == 0
    assert live.stdout.strip() not in listed.stdout


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("api-key", "create"), 2, "exactly one of --admin or --tenant"),
        (("api-key", "create", "--admin", "--tenant", "x"), 2, "exactly one of"),
        (("api-key", "create", "--tenant", "nope"), 2, "--tenant: not a valid id"),
        (("api-key", "create", "--tenant", "01a20000-0000-7000-8000-000000000000"), 1, "not found"),
        (("api-key", "revoke", "01a20000-0000-7000-8000-000000000000"), 1, "not found"),
    ],
)
def test_bad_cli_input_is_one_line_and_non_zero(
    env: dict[str, str], args: tuple[str, ...], code: int, message: str
) -> None:
    result = run_cli(*args, env=env)
    assert result.returncode == code
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and message in lines[0]


def test_invalid_setting_exits_2_naming_it(tmp_path: Path) -> None:
    result = run_cli(
        "db", "current", env={"MAILFLEET_HOME": str(tmp_path), "MAILFLEET_API_ADDR": "nope"}
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: MAILFLEET_API_ADDR: expected host:port, got 'nope'"
    ]


def test_unmigrated_database_is_refused_clearly(tmp_path: Path) -> None:
    env = {"MAILFLEET_HOME": str(tmp_path)}
    result = run_cli("api-key", "create", "--admin", env=env)
    assert result.returncode == 1
    assert "run 'mailfleet db upgrade'" in result.stderr
    assert run_cli("db", "upgrade", env=env).returncode == 0
    assert run_cli("db", "current", env=env).stdout.strip() == migrate.head_revision()
    assert KEY.match(run_cli("api-key", "create", "--admin", env=env).stdout)
