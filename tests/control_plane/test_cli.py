"""The CLI as an operator uses it: real processes, one-line errors, keys alone on stdout."""

from __future__ import annotations

import re
import tomllib
import uuid
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from control_plane.db import migrate
from control_plane.db.engine import Database
from control_plane.vault.pki import AgentPki
from tests.support.openbao import DevOpenBao
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


async def test_join_config_prints_a_ready_agent_toml(
    env: dict[str, str],
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    openbao: DevOpenBao,
    pki: AgentPki,
    tmp_path: Path,
) -> None:
    tenant = await client.post(
        "/api/v1/tenants", json={"name": f"cli-{id(tmp_path)}"}, headers=admin_headers
    )
    server = await client.post(
        "/api/v1/servers",
        json={"name": "edge", "tenant_id": tenant.json()["id"], "mail_stack": "none"},
        headers=admin_headers,
    )
    token_file = tmp_path / "token"
    token_file.write_text(openbao.token)
    vault_env = {
        **env,
        "MAILFLEET_VAULT_ADDR": openbao.url,
        "MAILFLEET_VAULT_TOKEN_FILE": str(token_file),
    }
    result = run_cli("server", "join-config", server.json()["id"], env=vault_env)
    assert result.returncode == 0, result.stderr
    config = tomllib.loads(result.stdout)["control_plane"]
    assert config["ca_pin"] == await pki.ca_pin()
    assert config["join_token"].startswith("mfjoin_")
    listed = run_cli("server", "list", "--tenant", tenant.json()["id"], env=vault_env)
    assert "edge" in listed.stdout and "pending" in listed.stdout

    missing = run_cli("server", "join-config", str(uuid.uuid4()), env=vault_env)
    assert missing.returncode == 1
    assert "not found" in missing.stderr
