"""``mailfleet server adopt|ssh-credential|clear-host-key``: a customer's machine joining
the fleet over SSH, and what its SSH login needs later. Loaded by ``control_plane.cli``.

A secret never goes on the command line (argv is readable by every user of the host, and
kept in shell histories): a key comes from a file, a password from a file or a prompt;
``-`` reads either from stdin.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from control_plane.cli import bad_input, invalid, run_async, settings, with_database

if TYPE_CHECKING:
    from pydantic import SecretStr

    from control_plane.db.engine import Database
    from control_plane.servers.schemas import SshCredentialIn

Server = Annotated[str, typer.Argument(metavar="SERVER", help="The server's id or name.")]
KeyFile = Annotated[
    Path | None,
    typer.Option(
        "--ssh-key", help="File with root's private key (OpenSSH or PEM, no passphrase); - stdin."
    ),
]
PasswordFile = Annotated[
    Path | None,
    typer.Option("--ssh-password-file", help="File whose first line is root's password; - stdin."),
]
AskPassword = Annotated[
    bool, typer.Option("--ssh-password", help="Ask for root's password (not echoed).")
]
Wait = Annotated[bool, typer.Option(help="Follow the workflow until ready or failed.")]
Timeout = Annotated[float, typer.Option(help="Seconds --wait waits.")]


def server_adopt(
    name: str,
    address: Annotated[str, typer.Option("--address", help="The machine's IPv4 address.")],
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant id.")],
    ssh_key: KeyFile = None,
    ssh_password_file: PasswordFile = None,
    ssh_password: AskPassword = False,
    workspace: Annotated[str | None, typer.Option("--workspace", help="Workspace id.")] = None,
    mail_stack: Annotated[str, typer.Option(help="mailu, or none (no Docker needed)")] = "mailu",
    mail_hostname: Annotated[
        str | None, typer.Option(help="The mail host's name, e.g. mx1.example.net (MailU).")
    ] = None,
    wait: Wait = False,
    timeout: Timeout = 1800,
) -> None:
    """Adopt a machine the customer has: MailFleet logs in as root over SSH, installs the
    agent and follows it to ready (a running `mailfleet serve` does). Prints the server id."""
    key, password = credential(ssh_key, ssh_password_file, ssh_password)
    from control_plane.cli import server_order
    from control_plane.provisioning.cli import create_server
    from control_plane.provisioning.registry import ADOPTED

    body = server_order(
        name, ADOPTED, None, None, tenant, workspace, mail_stack, mail_hostname,
        address=address, ssh_private_key=key, ssh_password=password,
    )  # fmt: skip
    limit = timeout if wait else None
    server_id = run_async(with_database(lambda db: create_server(db, settings(), body, limit)))
    typer.echo(server_id)


def server_ssh_credential(
    server: Server,
    ssh_key: KeyFile = None,
    ssh_password_file: PasswordFile = None,
    ssh_password: AskPassword = False,
    wait: Wait = False,
    timeout: Timeout = 1800,
) -> None:
    """Replace an adopted server's SSH credential; a failed install runs again with it."""
    from pydantic import ValidationError

    from control_plane.servers.schemas import SshCredentialIn

    key, password = credential(ssh_key, ssh_password_file, ssh_password)
    try:
        body = SshCredentialIn(ssh_private_key=key, ssh_password=password)
    except ValidationError as exc:
        raise invalid(exc) from None
    limit = timeout if wait else None
    state = run_async(with_database(lambda db: _replace(db, server, body, limit)))
    typer.echo(f"SSH credential replaced; the server is {state}")


def server_clear_host_key(server: Server) -> None:
    """Forget a server's pinned SSH host key after a legitimate reinstall of its machine
    (audited); the next login pins the key it meets, e.g. `mailfleet server retry`."""
    from control_plane.audit.capture import name_cli_object
    from control_plane.cli_common import find_server
    from control_plane.provisioning import service

    async def clear(db: Database) -> None:
        async with db.session() as session:
            found = await find_server(session, server)
            name_cli_object("server", found.id)  # the audit record of the run names it
            await service.clear_ssh_host_key(session, found)

    run_async(with_database(clear))
    typer.echo("SSH host key pin cleared")


async def _replace(
    db: Database, ref: str, body: SshCredentialIn, wait_seconds: float | None
) -> str:
    from control_plane.audit.capture import name_cli_object
    from control_plane.cli_common import find_server
    from control_plane.provisioning import service
    from control_plane.provisioning.cli import follow
    from control_plane.vault.connect import running_vault

    loaded = settings()
    vault = running_vault(loaded)
    try:
        async with db.session() as session:
            found = await find_server(session, ref)
            name_cli_object("server", found.id)
            server = await service.replace_ssh_credential(
                session, vault, loaded, found, body.ssh_private_key, body.ssh_password
            )
            server_id, state = server.id, server.state
    finally:
        vault.close()
    if wait_seconds is not None:
        await follow(db, server_id, wait_seconds, gone_is_success=False)
    return state


def credential(
    key_file: Path | None, password_file: Path | None, ask: bool
) -> tuple[SecretStr | None, SecretStr | None]:
    """Exactly one of a key file, a password file and the prompt (else exit 2, one line)."""
    from pydantic import SecretStr

    if sum((key_file is not None, password_file is not None, ask)) != 1:
        raise bad_input("give exactly one of --ssh-key, --ssh-password-file or --ssh-password")
    if key_file is not None:
        return SecretStr(_read(key_file, "--ssh-key")), None
    if password_file is not None:
        text = _read(password_file, "--ssh-password-file")
        return None, SecretStr(text.splitlines()[0] if text else "")
    return None, SecretStr(typer.prompt("root's SSH password", hide_input=True))


def _read(path: Path, flag: str) -> str:
    if str(path) == "-":
        return sys.stdin.read()
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise bad_input(f"{flag}: cannot read {path}: {getattr(exc, 'strerror', exc)}") from None
