"""The CLI as an operator uses it: one-line errors, keys alone on stdout, whole ids in tables.

What a command prints and does to the database runs in this process
(tests/support/cli_runner.py): the same exit code and lines, without a second or more of
interpreter start each. Exit statuses, settings from the environment, the home, the working
directory and the files a command leaves are checked on real ``mailfleet`` processes."""

from __future__ import annotations

import json
import re
import tomllib
import uuid
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from control_plane.db import migrate
from control_plane.db.engine import Database
from control_plane.servers.models import Server
from control_plane.vault.pki import AgentPki
from tests.conftest import MakeTenant
from tests.support.cli_runner import invoke_cli, invoke_cli_async
from tests.support.openbao import DevOpenBao
from tests.support.processes import run_cli

KEY = re.compile(r"^mf_(admin|live)_[0-9A-Za-z]{38}\n$")


@pytest.fixture
def env(database_url: str, db: Database, tmp_path: Path) -> dict[str, str]:
    return {"MAILFLEET_DATABASE_URL": database_url, "MAILFLEET_HOME": str(tmp_path / "home")}


@pytest.fixture
def vault_env(env: dict[str, str], openbao: DevOpenBao, tmp_path: Path) -> dict[str, str]:
    token_file = tmp_path / "token"
    token_file.write_text(openbao.token)
    return {
        **env,
        "MAILFLEET_VAULT_ADDR": openbao.url,
        "MAILFLEET_VAULT_TOKEN_FILE": str(token_file),
    }


@pytest.mark.postgres_only  # the CLI on SQLite: the quick start and embedded-default runs
async def test_keys_made_by_the_cli_work_on_the_api(
    env: dict[str, str], app: FastAPI, client: httpx.AsyncClient
) -> None:
    tenant = invoke_cli("tenant", "create", f"cli-tenant-{id(env)}", env=env)
    assert tenant.returncode == 0, tenant.stderr
    tenant_id = tenant.stdout.strip()

    admin = invoke_cli("api-key", "create", "--admin", env=env)
    assert admin.returncode == 0 and KEY.match(admin.stdout), admin
    live = invoke_cli("api-key", "create", "--tenant", tenant_id, "--name", "ops", env=env)
    assert live.returncode == 0 and KEY.match(live.stdout), live

    as_admin = await client.get(
        f"/api/v1/tenants/{tenant_id}", headers={"Authorization": f"Bearer {admin.stdout.strip()}"}
    )
    assert as_admin.status_code == 200
    as_tenant = await client.get(
        f"/api/v1/tenants/{tenant_id}", headers={"Authorization": f"Bearer {live.stdout.strip()}"}
    )
    assert as_tenant.status_code == 200

    listed = invoke_cli("api-key", "list", "--tenant", tenant_id, env=env)
    assert listed.returncode == 0
    assert live.stdout.strip() not in listed.stdout


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("api-key", "create"), 2, "exactly one of --admin or --tenant"),
        (("api-key", "create", "--admin", "--tenant", "x"), 2, "exactly one of"),
        (("api-key", "create", "--tenant", "nope"), 2, "--tenant: not a valid id"),
        (("api-key", "create", "--tenant", "01a20000-0000-7000-8000-000000000000"), 2, "not found"),
        (("api-key", "revoke", "01a20000-0000-7000-8000-000000000000"), 2, "not found"),
    ],
)
def test_bad_cli_input_is_one_line_and_non_zero(
    env: dict[str, str], args: tuple[str, ...], code: int, message: str
) -> None:
    result = invoke_cli(*args, env=env)
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


def test_a_missing_database_is_named_and_never_created(tmp_path: Path) -> None:
    env = {"MAILFLEET_HOME": str(tmp_path)}
    database = tmp_path / "mailfleet.db"
    for args in (("tenant", "list"), ("db", "current"), ("api-key", "create", "--admin")):
        result = run_cli(*args, env=env)
        assert result.returncode == 2, result
        assert result.stderr.splitlines() == [
            f"error: no MailFleet database at {database} (home {tmp_path} from MAILFLEET_HOME); "
            "run 'mailfleet db upgrade' or start 'mailfleet serve'"
        ]
        assert not database.exists(), f"{args} created the database"
    assert run_cli("db", "upgrade", env=env).returncode == 0
    # What the database then answers is output: in process.
    assert invoke_cli("db", "current", env=env).stdout.strip() == migrate.head_revision()
    assert KEY.match(invoke_cli("api-key", "create", "--admin", env=env).stdout)


def test_an_unmigrated_database_is_refused_clearly(tmp_path: Path) -> None:
    (tmp_path / "mailfleet.db").touch()
    result = invoke_cli("tenant", "list", env={"MAILFLEET_HOME": str(tmp_path)})
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: database schema is at empty, expected {migrate.head_revision()}: "
        "run 'mailfleet db upgrade'"
    ]


def test_commands_elsewhere_use_the_home_serve_recorded(tmp_path: Path) -> None:
    """No MAILFLEET_HOME: the home `serve` recorded in the user's config, made absolute; else
    ./var of the current directory, named when it has no database."""
    home, elsewhere, config = tmp_path / "checkout" / "var", tmp_path / "elsewhere", tmp_path / "c"
    elsewhere.mkdir()
    assert run_cli("db", "upgrade", env={"MAILFLEET_HOME": str(home)}).returncode == 0
    no_record = run_cli("tenant", "list", env={"XDG_CONFIG_HOME": str(config)}, cwd=elsewhere)
    assert no_record.returncode == 2
    assert f"no MailFleet database at {elsewhere}/var/mailfleet.db" in no_record.stderr
    assert "from the default ./var" in no_record.stderr
    assert not (elsewhere / "var").exists()

    (config / "mailfleet").mkdir(parents=True)
    (config / "mailfleet" / "home").write_text(f"{home}\n")
    env = {"XDG_CONFIG_HOME": str(config)}
    created = run_cli("tenant", "create", "elsewhere-co", env=env, cwd=elsewhere)
    assert created.returncode == 0, created.stderr
    listed = run_cli("tenant", "list", "--json", env=env, cwd=elsewhere)
    assert [t["name"] for t in json.loads(listed.stdout)] == ["elsewhere-co"]
    assert not (elsewhere / "var").exists()


@pytest.mark.postgres_only  # output formatting, the same on both databases
async def test_listings_print_whole_ids_and_json(
    env: dict[str, str], client: httpx.AsyncClient, admin_headers: dict[str, str], db: Database
) -> None:
    tenant = await client.post(
        "/api/v1/tenants", json={"name": f"wide-{uuid.uuid4()}"}, headers=admin_headers
    )
    tenant_id = tenant.json()["id"]
    server = await client.post(
        "/api/v1/servers",
        json={"name": "edge", "tenant_id": tenant_id, "mail_stack": "none"},
        headers=admin_headers,
    )
    server_id = server.json()["id"]
    narrow = {**env, "COLUMNS": "80"}  # as in an 80-column terminal; the output is a pipe

    listed = invoke_cli("server", "list", "--tenant", tenant_id, env=narrow)
    assert listed.returncode == 0, listed.stderr
    assert server_id in listed.stdout and tenant_id in listed.stdout
    tenants = invoke_cli("tenant", "list", env=narrow)
    assert tenant_id in tenants.stdout

    as_json = json.loads(
        invoke_cli("server", "list", "--tenant", tenant_id, "--json", env=env).stdout
    )
    assert [(s["id"], s["name"], s["state"], s["status"]) for s in as_json] == [
        (server_id, "edge", "enrolling", "pending")
    ]
    assert tenant_id in {
        t["id"] for t in json.loads(invoke_cli("tenant", "list", "--json", env=env).stdout)
    }
    shown = json.loads(invoke_cli("server", "show", server_id, "--json", env=env).stdout)
    assert shown["id"] == server_id and shown["provider"] == "manual"
    table = invoke_cli("server", "show", server_id, env=narrow)
    assert table.returncode == 0 and server_id in table.stdout and "enrolling" in table.stdout

    refused = invoke_cli("server", "retry", server_id, env=env)
    assert refused.returncode == 2
    assert refused.stderr.splitlines() == [
        f"error: server {server_id} is enrolling; only a failed server is retried"
    ]
    async with db.session() as session:
        row = await session.get(Server, uuid.UUID(server_id))
        assert row is not None
        row.state, row.failed_step, row.failure_reason = "failed", "enrolling", "no agent"
    retried = invoke_cli("server", "retry", server_id, env=env)
    assert retried.returncode == 0, retried.stderr
    assert retried.stdout == f"{server_id}: retrying enrolling\n"
    again = json.loads(invoke_cli("server", "show", server_id, "--json", env=env).stdout)
    assert (again["state"], again["failed_step"], again["failure_reason"]) == (
        "enrolling",
        None,
        None,
    )

    keys = json.loads(invoke_cli("api-key", "list", "--json", env=env).stdout)
    assert keys and {"id", "scope", "hint"} <= set(keys[0]) and "key" not in keys[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--mail-stack", "mailu"), "--mail-hostname is required with --mail-stack mailu"),
        (("--mail-stack", "exim"), "--mail-stack: "),
        (("--mail-stack", "none", "--provider", "nimbus"), "--provider: unknown provider 'nimbus'"),
    ],
)
async def test_server_create_errors_name_the_flags(
    vault_env: dict[str, str], make_tenant: MakeTenant, args: tuple[str, ...], message: str
) -> None:
    tenant = (await make_tenant()).id  # in process: `tenant create` has CLI tests of its own
    result = await invoke_cli_async(
        "server", "create", "mx1", "--tenant", tenant, *args, env=vault_env
    )
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {message}"), result.stderr
    assert "mail_hostname" not in lines[0] and "mail_stack" not in lines[0]


async def test_join_config_prints_a_ready_agent_toml(
    env: dict[str, str],
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    vault_env: dict[str, str],
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
    result = invoke_cli("server", "join-config", server.json()["id"], env=vault_env)
    assert result.returncode == 0, result.stderr
    config = tomllib.loads(result.stdout)["control_plane"]
    assert config["ca_pin"] == await pki.ca_pin()
    assert config["join_token"].startswith("mfjoin_")
    listed = invoke_cli("server", "list", "--tenant", tenant.json()["id"], env=vault_env)
    assert "edge" in listed.stdout and "pending" in listed.stdout

    missing = invoke_cli("server", "join-config", str(uuid.uuid4()), env=vault_env)
    assert missing.returncode == 2
    assert "not found" in missing.stderr
