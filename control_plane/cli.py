"""``mailfleet``: run the control plane and do admin tasks against its database.

Every failure ends with one line on stderr and a non-zero exit: 2 for bad input (usage,
settings, a missing database, what the API refuses as not found, conflicting or invalid), 1
for anything else (a provisioning or backup that failed, a service that is down).
Commands other than ``serve`` find the home by one rule (``settings.find_home``) and take the
settings the last ``serve`` recorded there, so a second shell needs no variables.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.table import Column, Table

from control_plane.errors import Conflict, InvalidInput, MailFleetError, NotFound
from control_plane.logs import configure_logging
from control_plane.settings import (
    Settings,
    SettingsError,
    find_home,
    load_client_settings,
    load_settings,
)

# Every run of `mailfleet` imports this module and each domain's cli.py: the services,
# SQLAlchemy models, Alembic, FastAPI and Vault are imported by the commands that use them
# (they were three quarters of this import), so a command pays only for what it runs.
if TYPE_CHECKING:
    from control_plane.api_keys.schemas import ApiKeyOut
    from control_plane.api_keys.tokens import Scope
    from control_plane.db.engine import Database
    from control_plane.servers.models import Server
    from control_plane.servers.schemas import ServerCreate, ServerOut
    from control_plane.tenants.schemas import TenantOut

T = TypeVar("T")
app = typer.Typer(
    name="mailfleet",
    help="MailFleet control plane.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(help="Database schema migrations.", no_args_is_help=True)
key_app = typer.Typer(help="API keys.", no_args_is_help=True)
tenant_app = typer.Typer(help="Tenants.", no_args_is_help=True)
server_app = typer.Typer(help="Servers and their agents.", no_args_is_help=True)
backup_app = typer.Typer(help="Backups of a server (restic).", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(server_app, name="server")
app.add_typer(key_app, name="api-key")
app.add_typer(tenant_app, name="tenant")
app.add_typer(backup_app, name="backup")
err = Console(stderr=True, highlight=False)
# What the API answers 404, 409 or 422: the caller's input is wrong, as with a usage error.
BAD_INPUT = (InvalidInput, NotFound, Conflict)
JsonOption = Annotated[
    bool, typer.Option("--json", help="JSON (the API's shapes) instead of a table.")
]

# API field names and the flags or arguments that set them: errors speak the CLI's words.
CLI_NAMES = {
    "name": "NAME",
    "tenant_id": "--tenant",
    "workspace_id": "--workspace",
    "provider": "--provider",
    "region": "--region",
    "plan": "--plan",
    "mail_stack": "--mail-stack",
    "mail_hostname": "--mail-hostname",
    "address": "--address",
    "ssh_private_key": "--ssh-key",
    "ssh_password": "--ssh-password",
    "at": "--at",
    "snapshot": "--snapshot",
    "mailbox": "--mailbox",
    "target": "--target",
    "restore_id": "RESTORE_ID",
    "keep": "--keep",
    "server_id": "--server",
    "check": "--check",
    "severity": "--severity",
    "starts_at": "--from",
    "ends_at": "--until",
    "comment": "--comment",
}
_FIELD_WORDS = re.compile(r"\b(?:body\.)?(" + "|".join(n for n in CLI_NAMES if "_" in n) + r")\b")


def in_cli_terms(message: str, field: str | None) -> str:
    """An API error in the CLI's words: ``--flag: message``, field names in it as flags."""
    text = _FIELD_WORDS.sub(lambda m: CLI_NAMES[m[1]], message)
    name = field.removeprefix("body.").split(".")[0] if field else ""
    flag = CLI_NAMES.get(name)
    return f"{flag}: {text}" if flag and flag not in text else text


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"error: {message}", markup=False, soft_wrap=True)
    return typer.Exit(code)


def bad_input(message: str) -> typer.Exit:
    """Bad input (usage, settings, a refused request): one line, exit 2."""
    return fail(message, 2)


def invalid(exc: ValidationError) -> typer.Exit:
    first = exc.errors()[0]
    return bad_input(in_cli_terms(first["msg"], ".".join(map(str, first["loc"]))))


def settings(log_level: str | None = "warning") -> Settings:
    """Settings for an admin command (the environment, then what ``serve`` recorded in the
    home), or exit 2 with one line. Admin commands log only warnings and errors."""
    try:
        loaded, _home = load_client_settings()
    except SettingsError as exc:
        raise bad_input(str(exc)) from None
    configure_logging(log_level or loaded.log_level)
    return loaded


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coro)
    except SettingsError as exc:
        raise bad_input(str(exc)) from None
    except MailFleetError as exc:
        code = 2 if isinstance(exc, BAD_INPUT) else 1
        raise fail(in_cli_terms(exc.detail, exc.field), code) from None
    except OSError as exc:
        raise fail(f"{type(exc).__name__}: {exc}") from None


def require_database(loaded: Settings) -> None:
    """SQLite creates a missing file on connect: a command must not leave an empty database
    behind (the next one would advise a migration), so say where it looked instead."""
    path = loaded.sqlite_file
    if path is None or path.exists():
        return
    home = find_home()
    source = f"home {loaded.home} from {home.source}"
    if loaded.database_url is not None:
        source = "MAILFLEET_DATABASE_URL"
    raise bad_input(
        f"no MailFleet database at {path} ({source}); "
        "run 'mailfleet db upgrade' or start 'mailfleet serve'"
    )


async def with_database(
    action: Callable[[Database], Awaitable[T]],
    *,
    require_current: bool = True,
    creates: bool = False,
) -> T:
    """Run ``action`` on the database; only ``creates`` commands may make a new one."""
    from control_plane.db.engine import Database
    from control_plane.db.schema_version import require_current as at_head

    loaded = settings()
    if not creates:
        require_database(loaded)
    db = Database.from_settings(loaded)
    try:
        if require_current:
            await at_head(db)
        return await action(db)
    finally:
        await db.dispose()


@app.command()
def serve(
    bootstrap_admin_key: Annotated[
        bool,
        typer.Option(help="Make an admin API key if none exists and print it once, last."),
    ] = False,
) -> None:
    """Run the control plane until stopped: the API, the agent gateway and enrollment, the
    provisioning workflow and the periodic jobs (backups, DKIM, TLS renewal, DMARC). State
    goes under MAILFLEET_HOME (default ./var), recorded with serve's settings for the CLI."""
    from control_plane.server import run

    try:
        loaded = load_settings()
    except SettingsError as exc:
        raise bad_input(str(exc)) from None
    configure_logging(loaded.log_level)
    try:
        code = run(loaded, bootstrap_admin_key=bootstrap_admin_key)
    except SettingsError as exc:
        raise bad_input(str(exc)) from None
    except MailFleetError as exc:
        raise fail(exc.detail) from None
    except OSError as exc:
        raise fail(f"{type(exc).__name__}: {exc}") from None
    raise typer.Exit(code)


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    from control_plane.db import migrate

    upgrade = with_database(
        lambda db: migrate.upgrade(db, revision), require_current=False, creates=True
    )
    run_async(upgrade)
    typer.echo(f"database at {revision}")


@db_app.command("downgrade")
def db_downgrade(revision: Annotated[str, typer.Argument(help="Target, e.g. base")]) -> None:
    """Revert migrations down to REVISION."""
    from control_plane.db import migrate

    run_async(with_database(lambda db: migrate.downgrade(db, revision), require_current=False))
    typer.echo(f"database at {revision}")


@db_app.command("current")
def db_current() -> None:
    """Print the schema revision the database is at."""
    from control_plane.db import migrate

    current = run_async(with_database(migrate.current_revision, require_current=False))
    typer.echo(current or "empty")


@key_app.command("create")
def key_create(
    admin: Annotated[bool, typer.Option("--admin", help="An admin key.")] = False,
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="A key for this tenant id.")
    ] = None,
    name: Annotated[str, typer.Option(help="A label for the key.")] = "cli",
) -> None:
    """Create an API key and print only the key on stdout."""
    from control_plane.api_keys import service as api_keys

    if admin == (tenant is not None):
        raise bad_input("give exactly one of --admin or --tenant ID")
    scope: Scope = "admin" if admin else "tenant"
    tenant_id = parse_uuid(tenant, "--tenant") if tenant else None

    async def create(db: Database) -> str:
        async with db.session() as session:
            issued = await api_keys.issue_key(session, scope=scope, tenant_id=tenant_id, name=name)
            return issued.key

    typer.echo(run_async(with_database(create)))


@key_app.command("list")
def key_list(
    tenant: Annotated[str | None, typer.Option("--tenant")] = None, as_json: JsonOption = False
) -> None:
    """List live keys (hints only, never the keys)."""
    from control_plane.api_keys import service as api_keys
    from control_plane.api_keys.schemas import ApiKeyOut

    tenant_id = parse_uuid(tenant, "--tenant") if tenant else None

    async def load(db: Database) -> list[ApiKeyOut]:
        async with db.session() as session:
            page = await api_keys.list_keys(session, tenant_id, False, None, 500)
            return [ApiKeyOut.model_validate(k) for k in page.items]

    keys = run_async(with_database(load))
    if as_json:
        return print_json(keys)
    rows = [
        (
            str(k.id),
            k.scope,
            str(k.tenant_id or "-"),
            k.name,
            k.hint,
            str(k.last_used_at or "never"),
        )
        for k in keys
    ]
    print_table(("id", "scope", "tenant", "name", "hint", "last used"), rows)


@key_app.command("revoke")
def key_revoke(key_id: str) -> None:
    """Revoke a key by id."""
    from control_plane.api_keys import service as api_keys

    ident = parse_uuid(key_id, "KEY_ID")

    async def revoke(db: Database) -> None:
        async with db.session() as session:
            await api_keys.revoke_key(session, ident)

    run_async(with_database(revoke))
    typer.echo(f"revoked {ident}")


@tenant_app.command("create")
def tenant_create(name: str) -> None:
    """Create a tenant and print its id."""
    from control_plane.tenants import service as tenants
    from control_plane.tenants.schemas import TenantCreate

    try:
        data = TenantCreate(name=name)
    except ValueError:
        raise bad_input("NAME: 1-200 printable characters") from None

    async def create(db: Database) -> uuid.UUID:
        async with db.session() as session:
            return (await tenants.create_tenant(session, data)).id

    typer.echo(str(run_async(with_database(create))))


@tenant_app.command("list")
def tenant_list(as_json: JsonOption = False) -> None:
    """List tenants."""
    from control_plane.tenants import service as tenants
    from control_plane.tenants.schemas import TenantOut

    async def load(db: Database) -> list[TenantOut]:
        async with db.session() as session:
            page = await tenants.list_tenants(session, None, 500)
            return [TenantOut.model_validate(t) for t in page.items]

    found = run_async(with_database(load))
    if as_json:
        return print_json(found)
    print_table(
        ("id", "name", "created"), [(str(t.id), t.name, t.created_at.isoformat()) for t in found]
    )


@server_app.command("join-config")
def server_join_config(server_id: str) -> None:
    """Print a ready agent.toml for a server, with a fresh single-use join token."""
    from control_plane.enrollment.agent_config import issue_join_config
    from control_plane.servers import service as servers
    from control_plane.vault.connect import running_vault
    from control_plane.vault.pki import AgentPki

    ident = parse_uuid(server_id, "SERVER_ID")
    loaded = settings()

    async def issue(db: Database) -> str:
        vault = running_vault(loaded)
        try:
            pki = AgentPki(vault, loaded.vault_pki_mount)
            async with db.session() as session:
                server = await servers.get_server(session, ident)
                return (await issue_join_config(session, pki, loaded, server)).agent_toml
        finally:
            vault.close()

    typer.echo(run_async(with_database(issue)), nl=False)


@server_app.command("list")
def server_list(
    tenant: Annotated[str | None, typer.Option("--tenant")] = None, as_json: JsonOption = False
) -> None:
    """List servers with their agents' status."""
    from control_plane.servers import service as servers

    tenant_id = parse_uuid(tenant, "--tenant") if tenant else None

    async def load(db: Database) -> list[ServerOut]:
        async with db.session() as session:
            page = await servers.list_servers(session, tenant_id, None, None, 500)
            return _server_outs(page.items)

    found = run_async(with_database(load))
    if as_json:
        return print_json(found)
    rows = [
        (str(s.id), s.name, str(s.tenant_id), s.provider, s.state, s.ipv4 or "-", s.status,
         s.hostname or "-")
        for s in found
    ]  # fmt: skip
    print_table(("id", "name", "tenant", "provider", "state", "ipv4", "agent", "hostname"), rows)


@server_app.command("show")
def server_show(server_id: str, as_json: JsonOption = False) -> None:
    """One server: its workflow state (and why it failed), machine and agent."""
    from control_plane.servers import service as servers

    ident = parse_uuid(server_id, "SERVER_ID")

    async def load(db: Database) -> ServerOut:
        async with db.session() as session:
            return _server_outs([await servers.get_server(session, ident)])[0]

    found = run_async(with_database(load))
    if as_json:
        return print_json(found)
    values = found.model_dump(mode="json")
    print_table(("field", "value"), [(k, cell_text(v)) for k, v in values.items()])


@server_app.command("retry")
def server_retry(
    server_id: str,
    wait: Annotated[bool, typer.Option(help="Follow the workflow until ready or failed.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds --wait waits.")] = 1800,
) -> None:
    """Run a failed server's failed step again (a running `mailfleet serve` carries it out)."""
    from control_plane.provisioning.cli import retry_server

    ident = parse_uuid(server_id, "SERVER_ID")
    limit = timeout if wait else None
    step = run_async(with_database(lambda db: retry_server(db, settings(), ident, limit)))
    typer.echo(f"{ident}: retrying {step}")


def _server_outs(found: Sequence[Server]) -> list[ServerOut]:
    """As the API shows them (the agent's status follows from its last heartbeat)."""
    from control_plane.db.base import utcnow
    from control_plane.servers.status import server_out

    unknown_after = timedelta(seconds=settings().agent_unknown_after_seconds)
    now = utcnow()
    return [server_out(server, now, unknown_after) for server in found]


@server_app.command("create")
def server_create(
    name: str,
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant id.")],
    provider: Annotated[str, typer.Option(help="manual, local, hostwinds, …")] = "manual",
    region: Annotated[str | None, typer.Option(help="Default: the provider's only one.")] = None,
    plan: Annotated[str | None, typer.Option(help="Default: the provider's first plan.")] = None,
    workspace: Annotated[str | None, typer.Option("--workspace", help="Workspace id.")] = None,
    mail_stack: Annotated[str, typer.Option(help="mailu, or none (no Docker needed)")] = "mailu",
    mail_hostname: Annotated[
        str | None, typer.Option(help="The mail host's name, e.g. mx1.example.net (MailU).")
    ] = None,
    wait: Annotated[bool, typer.Option(help="Follow the workflow until ready or failed.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds --wait waits.")] = 1800,
) -> None:
    """Order a server; a running `mailfleet serve` provisions it. Prints the server id."""
    from control_plane.provisioning.cli import create_server

    body = server_order(name, provider, region, plan, tenant, workspace, mail_stack, mail_hostname)
    limit = timeout if wait else None
    server_id = run_async(with_database(lambda db: create_server(db, settings(), body, limit)))
    typer.echo(server_id)


@server_app.command("delete")
def server_delete(
    server_id: Annotated[str | None, typer.Argument(help="The server's id.")] = None,
    all_local: Annotated[
        bool, typer.Option("--all-local", help="Every server of the local provider instead.")
    ] = False,
    wait: Annotated[bool, typer.Option(help="Wait until it is gone.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds --wait waits.")] = 1800,
) -> None:
    """Deprovision a server: terminate its VPS, revoke its agent, destroy its secrets."""
    from control_plane.provisioning.cli import delete_local_servers, delete_server

    if all_local == (server_id is not None):
        raise bad_input("give exactly one of SERVER_ID or --all-local")
    limit = timeout if wait else None
    if server_id is None:
        gone = run_async(with_database(lambda db: delete_local_servers(db, settings(), limit)))
        err.print(f"deprovisioning {len(gone)} local server{'' if len(gone) == 1 else 's'}")
        for ident in gone:
            typer.echo(str(ident))
        return
    ident = parse_uuid(server_id, "SERVER_ID")
    run_async(with_database(lambda db: delete_server(db, settings(), ident, limit)))


def server_order(
    name: str,
    provider: str,
    region: str | None,
    plan: str | None,
    tenant: str,
    workspace: str | None,
    mail_stack: str,
    mail_hostname: str | None,
    **adoption: Any,
) -> ServerCreate:
    """The order as the API takes it (``adoption``: an adopted machine's address and SSH
    credential, ``server adopt``), or exit 2 naming the flag."""
    from control_plane.servers.schemas import ServerCreate

    try:
        return ServerCreate(
            name=name,
            provider=provider,
            region=region,
            plan=plan,
            mail_stack=mail_stack,
            mail_hostname=mail_hostname,
            tenant_id=parse_uuid(tenant, "--tenant"),
            workspace_id=parse_uuid(workspace, "--workspace") if workspace else None,
            **adoption,
        )
    except ValidationError as exc:
        raise invalid(exc) from None


def parse_uuid(value: str, name: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise bad_input(f"{name}: not a valid id: {value!r}") from None


@backup_app.command("run")
def backup_run(
    server_id: str,
    wait: Annotated[bool, typer.Option(help="Follow it with a progress bar.")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds --wait waits.")] = 6 * 3600,
) -> None:
    """Back the server up now (its policy says where)."""
    from control_plane.backups.cli import run_backup

    ident = parse_uuid(server_id, "SERVER_ID")
    limit = timeout if wait else None
    typer.echo(run_async(with_database(lambda db: run_backup(db, ident, limit))))


@backup_app.command("list")
def backup_list(server_id: str, as_json: JsonOption = False) -> None:
    """The server's snapshots, newest first, and what is wrong with its backups."""
    from control_plane.backups.cli import backups, snapshot_rows

    ident = parse_uuid(server_id, "SERVER_ID")
    found = run_async(with_database(lambda db: backups(db, ident)))
    if as_json:
        return print_json(found)
    print_table(
        ("snapshot", "taken (UTC)", "age", "bytes", "added", "offsite"), snapshot_rows(found)
    )


@backup_app.command("restore")
def backup_restore(
    server_id: str,
    at: Annotated[
        str | None, typer.Option(help="The state at this time, e.g. 2026-11-20T14:00Z.")
    ] = None,
    snapshot: Annotated[str | None, typer.Option(help="Or a snapshot id.")] = None,
    mailbox: Annotated[str | None, typer.Option(help="Only this mailbox.")] = None,
    target: Annotated[
        str, typer.Option(help="in_place (previous state kept aside), or a directory.")
    ] = "in_place",
    wait: Annotated[bool, typer.Option(help="Follow it with a progress bar.")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds --wait waits.")] = 6 * 3600,
) -> None:
    """Restore a point in time, in place or into a directory; the whole data or a mailbox."""
    from control_plane.backups.cli import restore
    from control_plane.backups.schemas import RestoreIn

    ident = parse_uuid(server_id, "SERVER_ID")
    try:
        body = RestoreIn(at=at, snapshot=snapshot, mailbox=mailbox, target=target)
    except ValidationError as exc:
        raise invalid(exc) from None
    limit = timeout if wait else None
    typer.echo(run_async(with_database(lambda db: restore(db, ident, body, limit))))


@backup_app.command("finish")
def backup_finish(
    server_id: str,
    restore_id: str,
    keep: Annotated[str, typer.Option(help="restored, or previous to roll back.")],
    timeout: Annotated[float, typer.Option(help="Seconds to wait.")] = 3600,
) -> None:
    """Finish an in-place restore: keep the restored state, or roll back to the previous."""
    from control_plane.backups.cli import finish
    from control_plane.backups.schemas import RestoreFinish

    ident = parse_uuid(server_id, "SERVER_ID")
    try:
        body = RestoreFinish(restore_id=restore_id, keep=keep)
    except ValidationError as exc:
        raise invalid(exc) from None
    typer.echo(
        run_async(with_database(lambda db: finish(db, ident, body.restore_id, body.keep, timeout)))
    )


@app.command("backup-control-plane")
def backup_control_plane() -> None:
    """Back up the database and Vault (raft snapshot) into the state repository
    (MAILFLEET_STATE_BACKUP_REPOSITORY); run it hourly, e.g. from a systemd timer."""
    from control_plane.backups.state import backup_state
    from control_plane.vault.connect import running_vault

    loaded = settings()

    async def run(db: Database) -> dict[str, str]:
        vault = running_vault(loaded)
        try:
            return await backup_state(loaded, db, vault)
        finally:
            vault.close()

    stored = run_async(with_database(run))
    typer.echo(f"backed up {', '.join(stored.values())}")


@app.command("restore-control-plane")
def restore_control_plane(
    at: Annotated[
        str | None, typer.Option(help="The state at this time (default: the newest backup).")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: this replaces all state.")] = False,
) -> None:
    """Replace the database and Vault with a backup. Stop every `mailfleet serve` first."""
    from control_plane.backups.state import restore_state
    from control_plane.vault.connect import open_vault

    if not yes:
        raise bad_input("this replaces the database and Vault; pass --yes to go ahead")
    when = parse_when(at, "--at") if at else None
    loaded = settings()

    async def run(db: Database) -> dict[str, str]:
        async with open_vault(loaded) as vault:
            return await restore_state(loaded, db, vault, when)

    restored = run_async(with_database(run, require_current=False, creates=True))
    typer.echo(f"restored {', '.join(restored.values())}")


def parse_when(value: str, name: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise bad_input(f"{name}: not a time like 2026-11-20T14:00Z") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def print_table(columns: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    """A table that never cuts a value: folded to fit a terminal, full width into a pipe."""
    table = Table(*(Column(c, overflow="fold") for c in columns))
    for row in rows:
        table.add_row(*row)
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=100_000)
    console.print(table)


def print_json(found: BaseModel | Sequence[BaseModel]) -> None:
    """The API's shapes, so scripts read the CLI and the API alike."""
    if isinstance(found, BaseModel):
        typer.echo(found.model_dump_json(indent=2))
    else:
        typer.echo(json.dumps([m.model_dump(mode="json") for m in found], indent=2))


def cell_text(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "-"
    return str(value)


def _domain_commands() -> None:
    """Commands kept with their domains (they use the helpers above, so they come last)."""
    from control_plane.alerts.cli import channel_app
    from control_plane.costs.cli import costs
    from control_plane.health.cli import server_health
    from control_plane.incidents.cli import incident_app, silence_app
    from control_plane.ips.cli import ip_app
    from control_plane.ipswitch.cli import switch_app
    from control_plane.resize.cli import server_recommendations, server_resize
    from control_plane.servers.cli import server_adopt, server_clear_host_key, server_ssh_credential
    from control_plane.usage.cli import server_usage

    server_app.command("health")(server_health)
    server_app.command("resize")(server_resize)
    server_app.command("recommendations")(server_recommendations)
    server_app.command("usage")(server_usage)
    server_app.command("adopt")(server_adopt)
    server_app.command("ssh-credential")(server_ssh_credential)
    server_app.command("clear-host-key")(server_clear_host_key)
    app.add_typer(incident_app, name="incident")
    app.add_typer(silence_app, name="silence")
    app.add_typer(channel_app, name="alert-channel")
    app.add_typer(ip_app, name="ip")
    app.add_typer(switch_app, name="ip-switch")
    app.command("costs")(costs)


_domain_commands()


def main() -> None:
    app()
