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
from collections.abc import Awaitable, Callable

from control_plane.errors import MailFleetError
from control_plane.vault.client import Vault, server_secret_path

SECRETS_KEY = "secrets_from"


class SecretUnavailable(MailFleetError):
    """The command's secrets could not be read; the command fails with this reason."""


async def resolve(
    vault: Vault,
    server_id: uuid.UUID,
    tenant_id: uuid.UUID,
    payload: str,
    owns_domain: Callable[[str], Awaitable[bool]] | None = None,
) -> str:
    """The payload to send: ``secrets_from`` replaced by the secret's fields.

    ``secrets_from`` is a Vault path (every field merged as is) or ``{"path": …, "fields":
    {"<vault field>": "<payload key>", …}}`` (only those, renamed; a dotted key such as
    ``repository.url`` replaces a value inside an object, so the stored payload can hold a
    masked URL where the agent gets the full one). Paths must lie under the
    server's prefix ``vps/<tenant>/<server>/``, the tenant's mailbox credentials
    ``smtp/<tenant>/``, or ``dkim/<domain>/`` of a domain ``owns_domain`` confirms is the
    tenant's (domain names are unique across tenants, so the path itself names no tenant).
    """
    if SECRETS_KEY not in payload:
        return payload
    data = json.loads(payload)
    reference = data.pop(SECRETS_KEY, None)
    if reference is None:
        return payload
    path, fields = (reference, None) if isinstance(reference, str) else _parts(reference)
    allowed = (server_secret_path(tenant_id, server_id) + "/", f"smtp/{tenant_id}/")
    if not path.startswith(allowed) and not await _owned_dkim(path, owns_domain):
        raise SecretUnavailable(f"secrets_from {path!r} is outside this server's secrets")
    secret = await vault.get(path)
    if secret is None:
        raise SecretUnavailable(f"no secret at {path}")
    if fields is not None:
        missing = sorted(set(fields) - set(secret))
        if missing:
            raise SecretUnavailable(f"the secret at {path} lacks {', '.join(missing)}")
        secret = {key: secret[name] for name, key in fields.items()}
    for key, value in secret.items():
        _place(data, key, value)
    return json.dumps(data)


def _place(payload: dict[str, object], key: str, value: object) -> None:
    *parents, last = key.split(".")
    node = payload
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[last] = value


async def _owned_dkim(path: str, owns_domain: Callable[[str], Awaitable[bool]] | None) -> bool:
    parts = path.split("/")
    if owns_domain is None or len(parts) != 3 or parts[0] != "dkim":
        return False
    return await owns_domain(parts[1])


def _parts(reference: object) -> tuple[str, dict[str, str]]:
    if not isinstance(reference, dict) or not isinstance(reference.get("path"), str):
        raise SecretUnavailable("secrets_from must be a path or {path, fields}")
    fields = reference.get("fields") or {}
    if not isinstance(fields, dict):
        raise SecretUnavailable("secrets_from.fields must map vault fields to payload keys")
    return reference["path"], {str(k): str(v) for k, v in fields.items()}
