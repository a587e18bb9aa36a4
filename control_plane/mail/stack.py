"""What the control plane asks an agent to install: MailU's settings and where its secrets are.

The secrets (Flask ``SECRET_KEY``, the REST ``API_TOKEN``, the first admin's password) are
made here once per server and kept in Vault at ``vps/<tenant>/<server>/mailu``. The
``mailu.install`` command stored in the database names that path (``secrets_from``); the
gateway reads Vault when it delivers the command (see ``commands/secrets.py``), so the
secrets travel only over the agent's mutual-TLS stream and land only in ``mailu.env``.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.commands import service as commands
from control_plane.commands.models import Command
from control_plane.errors import Conflict
from control_plane.servers.models import Server
from control_plane.vault.client import Vault, server_secret_path

INSTALL_SECONDS = 1800.0  # image pulls on a fresh VPS can be slow
STATUS_SECONDS = 60.0
SECRET_FIELDS = ("secret_key", "api_token", "admin_password")


def mailu_secrets_path(server: Server) -> str:
    return server_secret_path(server.tenant_id, server.id, "mailu")


_SECRET_BYTES = {"secret_key": 32, "api_token": 32, "admin_password": 24}


def _new_secrets() -> dict[str, str]:
    return {name: secrets.token_urlsafe(size) for name, size in _SECRET_BYTES.items()}


async def ensure_mailu_secrets(vault: Vault, server: Server) -> str:
    """Make the server's MailU secrets once; returns their Vault path."""
    path = mailu_secrets_path(server)
    await vault.ensure(path, _new_secrets)
    return path


def install_payload(server: Server, secrets_path: str) -> dict[str, Any]:
    """The ``mailu.install`` payload, without secret values."""
    assert server.mail_hostname is not None and server.ipv4 is not None
    domain = server.mail_hostname.split(".", 1)[1]
    return {
        "domain": domain,
        "hostnames": [server.mail_hostname],
        "postmaster": "postmaster",
        # Certificates are delivered by MailFleet (the TLS issue); until then MailU's front
        # serves plain SMTP on 25 and refuses TLS ports, which is what a new server needs.
        "tls_flavor": "cert",
        "bind_address": server.ipv4,
        "dkim_selector": server.dkim_selector or "dkim",
        "secrets_from": secrets_path,
    }


def _require_mailu(server: Server) -> None:
    if server.mail_stack != "mailu":
        raise Conflict(f"server {server.id} runs no mail stack")
    if server.state != "ready":
        raise Conflict(f"server {server.id} is {server.state}; MailU is not installed yet")


async def queue_install(session: AsyncSession, vault: Vault, server: Server) -> Command:
    """Re-render MailU from the server's settings and Vault's secrets; ``mailu.install``
    restarts only the services whose configuration changed."""
    path = await ensure_mailu_secrets(vault, server)
    return await commands.queue_system_command(
        session, server, "mailu.install", install_payload(server, path), INSTALL_SECONDS
    )


async def rotate_secrets(
    session: AsyncSession, vault: Vault, server: Server, names: Iterable[str]
) -> Command:
    """New versions of the chosen secrets in Vault, then the install that applies them.

    Mailu's admin sets the first admin's password from ``INITIAL_ADMIN_PW`` on every start
    (``INITIAL_ADMIN_MODE=update``), so a new password takes effect with the re-render too.
    """
    _require_mailu(server)
    path = await ensure_mailu_secrets(vault, server)
    current = await vault.get(path) or _new_secrets()
    fresh = _new_secrets()
    await vault.put(path, {**current, **{name: fresh[name] for name in names}})
    return await queue_install(session, vault, server)


async def request_status(session: AsyncSession, server: Server) -> Command:
    _require_mailu(server)
    return await commands.queue_system_command(session, server, "mailu.status", {}, STATUS_SECONDS)


async def last_status(
    session: AsyncSession, server: Server
) -> tuple[dict[str, Any], datetime] | None:
    """The result of the latest successful ``mailu.status``, and when it finished."""
    command = await session.scalar(
        select(Command)
        .where(
            Command.server_id == server.id,
            Command.kind == "mailu.status",
            Command.state == "succeeded",
        )
        .order_by(Command.finished_at.desc())
        .limit(1)
    )
    if command is None or command.result is None or command.finished_at is None:
        return None
    return json.loads(command.result), command.finished_at
