"""Secrets in command payloads, resolved from Vault at delivery and never stored.

A command whose payload has ``"secrets_from": "<vault path>"`` is stored with that
reference only. When the gateway sends it, the secret's fields are merged into the payload
on the way; the agent gets them over its mutual-TLS stream. The path must lie under the
server's own prefix (``vps/<tenant>/<server>/``), so one server's command can never carry
another's secrets.
"""

from __future__ import annotations

import json
import uuid

from control_plane.errors import MailFleetError
from control_plane.vault.client import Vault

SECRETS_KEY = "secrets_from"


class SecretUnavailable(MailFleetError):
    """The command's secrets could not be read; the command fails with this reason."""


async def resolve(vault: Vault, server_id: uuid.UUID, tenant_id: uuid.UUID, payload: str) -> str:
    if SECRETS_KEY not in payload:
        return payload
    data = json.loads(payload)
    path = data.pop(SECRETS_KEY, None)
    if path is None:
        return payload
    if not isinstance(path, str) or not path.startswith(f"vps/{tenant_id}/{server_id}/"):
        raise SecretUnavailable(f"secrets_from {path!r} is not under this server's prefix")
    secret = await vault.get(path)
    if secret is None:
        raise SecretUnavailable(f"no secret at {path}")
    return json.dumps({**data, **secret})
