"""What the control plane asks an agent to install: MailU's settings and where its secrets are.

The secrets (Flask ``SECRET_KEY``, the REST ``API_TOKEN``, the first admin's password) are
made here once per server and kept in Vault at ``vps/<tenant>/<server>/mailu``. The
``mailu.install`` command stored in the database names that path (``secrets_from``); the
gateway reads Vault when it delivers the command (see ``commands/secrets.py``), so the
secrets travel only over the agent's mutual-TLS stream and land only in ``mailu.env``.
"""

from __future__ import annotations

import secrets
from typing import Any

from control_plane.servers.models import Server
from control_plane.vault.client import Vault, secret_path

INSTALL_SECONDS = 1800.0  # image pulls on a fresh VPS can be slow
SECRET_FIELDS = ("secret_key", "api_token", "admin_password")


def mailu_secrets_path(server: Server) -> str:
    return secret_path("vps", server.tenant_id, server.id, "mailu")


def _new_secrets() -> dict[str, str]:
    return {
        "secret_key": secrets.token_urlsafe(32),
        "api_token": secrets.token_urlsafe(32),
        "admin_password": secrets.token_urlsafe(24),
    }


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
