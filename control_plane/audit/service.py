"""Recording changes and reading them back.

Nobody has to remember to record: a request that may change something (any method but
GET/HEAD/OPTIONS) carries a ``Pending`` record, and ``capture.py`` writes it inside the first
transaction of that request that writes anything, so a committed change never lacks its
record and a rolled-back one never has a false one. What was refused or failed is recorded
after the answer by the middleware, with its status. ``record`` is for features that want a
more precise action than the route's (``alert.acknowledge``); it takes the request's place.
"""

from __future__ import annotations

import contextlib
import getpass
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.audit.models import AuditEvent
from control_plane.db.lookup import get_by_id
from control_plane.db.pagination import Page, paginate

PENDING_KEY = "audit_pending"  # Session.info: the Pending record of the request using it
LOCAL_ADDRESS = "local"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_METHOD_VERBS = {"POST": "create", "PUT": "put", "PATCH": "update", "DELETE": "delete"}


@dataclass(frozen=True)
class Actor:
    """Who acts: an API key (copied as it was) or an operator on this host's CLI."""

    kind: Literal["api_key", "cli"]
    address: str
    key_id: uuid.UUID | None = None
    key_name: str | None = None
    key_hint: str | None = None
    tenant_id: uuid.UUID | None = None  # the key's tenant; None for admin keys and the CLI
    user: str | None = None

    @classmethod
    def cli(cls) -> Actor:
        """The CLI works on the database directly: no key, the OS user on this host."""
        try:
            user = getpass.getuser()
        except (KeyError, OSError):  # no passwd entry and no LOGNAME (containers)
            import os

            user = str(os.getuid())
        return cls(kind="cli", address=LOCAL_ADDRESS, user=user)


@dataclass
class Pending:
    """What one request or CLI command is about to do; written once, when it first commits."""

    actor: Actor
    action: str
    object_type: str | None
    object_id: uuid.UUID | None
    request: str
    status: int | None = None  # what success answers (HTTP); None for the CLI
    creates: str | None = None  # a create: the table-name ending of the row it makes
    written: bool = False
    claimed: bool = False  # ``record`` wrote a more precise record in its place


def new_event(
    actor: Actor,
    action: str,
    object_type: str | None,
    object_id: uuid.UUID | None,
    *,
    tenant_id: uuid.UUID | None = None,
    request: str = "",
    status: int | None = None,
    succeeded: bool = True,
) -> AuditEvent:
    """The row; a tenant key's events always belong to its tenant."""
    return AuditEvent(
        tenant_id=actor.tenant_id or tenant_id,
        actor_kind=actor.kind,
        key_id=actor.key_id,
        key_name=actor.key_name,
        key_hint=actor.key_hint,
        user=actor.user,
        address=actor.address[:64],
        action=action[:100],
        object_type=object_type,
        object_id=object_id,
        request=request[:300],
        status=status,
        succeeded=succeeded,
    )


async def record(
    session: AsyncSession,
    actor: Actor,
    action: str,
    object_type: str | None,
    object_id: uuid.UUID | None,
    *,
    tenant_id: uuid.UUID | None = None,
) -> AuditEvent:
    """Record ``action`` in the caller's transaction (e.g. ``server.resize``).

    Inside a request this replaces the request's own record, keeping its status and request
    line, so one change is one event.
    """
    pending = session.info.get(PENDING_KEY)
    request, status = "", None
    if isinstance(pending, Pending) and not pending.written:
        pending.claimed = True
        request, status = pending.request, pending.status
    event = new_event(
        actor,
        action,
        object_type,
        object_id,
        tenant_id=tenant_id,
        request=request,
        status=status,
    )
    session.add(event)
    await session.flush()
    return event


async def latest(
    session: AsyncSession, object_type: str, object_id: uuid.UUID, action: str
) -> AuditEvent | None:
    """The newest successful ``action`` on an object: "acknowledged by", "resized by"."""
    return await session.scalar(
        select(AuditEvent)
        .where(
            AuditEvent.object_type == object_type,
            AuditEvent.object_id == object_id,
            AuditEvent.action == action,
            AuditEvent.succeeded.is_(True),
        )
        .order_by(AuditEvent.id.desc())
        .limit(1)
    )


async def list_events(
    session: AsyncSession,
    *,
    object_type: str | None,
    object_id: uuid.UUID | None,
    key_id: uuid.UUID | None,
    tenant_id: uuid.UUID | None,
    since: datetime | None,
    until: datetime | None,
    after: uuid.UUID | None,
    limit: int,
    newest_first: bool = False,
) -> Page[AuditEvent]:
    stmt = select(AuditEvent)
    for column, value in (
        (AuditEvent.object_type, object_type),
        (AuditEvent.object_id, object_id),
        (AuditEvent.key_id, key_id),
        (AuditEvent.tenant_id, tenant_id),
    ):
        if value is not None:
            stmt = stmt.where(column == value)
    if since is not None:
        stmt = stmt.where(AuditEvent.at >= since)
    if until is not None:
        stmt = stmt.where(AuditEvent.at < until)
    return await paginate(session, stmt, AuditEvent.id, after, limit, newest_first=newest_first)


async def get_event(session: AsyncSession, event_id: uuid.UUID) -> AuditEvent:
    return await get_by_id(session, AuditEvent, event_id, "audit event")


def _snake(segment: str) -> str:
    return segment.replace("-", "_")


def singular(segment: str) -> str:
    word = _snake(segment)
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith(("xes", "ses")):
        return word[:-2]
    return word.removesuffix("s")


def _uuid(value: object) -> uuid.UUID | None:
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        return uuid.UUID(str(value))
    return None


def api_pending(
    actor: Actor, method: str, template: str, params: dict[str, str], success_status: int
) -> Pending:
    """Name a request's change from its route, so a new route is recorded without code.

    ``POST /servers`` is ``server.create`` of the new server; ``DELETE /servers/{server_id}``
    ``server.delete``; ``POST /servers/{server_id}/retry`` ``server.retry``;
    ``PUT /servers/{server_id}/backup-policy`` ``backup_policy.put`` on the server; a ``201``
    ``POST /servers/{server_id}/commands`` ``command.create`` of the new command.
    """
    parts = [p for p in template.split("/") if p]
    if parts[:2] == ["api", "v1"]:
        parts = parts[2:]
    request = f"{method} {template}"
    verb = _METHOD_VERBS.get(method, method.lower())
    places = [i for i, part in enumerate(parts) if part.startswith("{")]
    if not places:
        kind = singular(parts[-1]) if parts else "api"
        return Pending(
            actor, f"{kind}.{verb}", kind, None, request, success_status, _snake(parts[-1])
        )
    last = places[-1]
    name = parts[last].strip("{}")
    kind = singular(parts[last - 1]) if last > 0 else name.removesuffix("_id")
    ident = _uuid(params.get(name))
    tail = [_snake(p) for p in parts[last + 1 :]]
    if not tail:
        if method == "POST":
            verb = "post"
        return Pending(actor, f"{kind}.{verb}", kind, ident, request, success_status)
    if method == "POST" and success_status == 201 and len(tail) == 1:
        made = singular(tail[0])
        return Pending(actor, f"{made}.create", kind, ident, request, success_status, tail[0])
    if method == "POST":
        return Pending(actor, ".".join([kind, *tail]), kind, ident, request, success_status)
    return Pending(actor, ".".join([*tail, verb]), kind, ident, request, success_status)


def cli_pending(command_path: str, params: dict[str, object]) -> Pending:
    """Name a CLI command's change: ``mailfleet tenant create`` is ``tenant.create``; the
    object is the id argument it was given (``server delete ID``) or the row it creates."""
    words = [_snake(w) for w in command_path.split()[1:]] or ["cli"]
    group = words[0]
    kind, ident = group, None
    for name, value in params.items():
        found = _uuid(value) if name.endswith("_id") else None
        if found is not None:
            stem = name.removesuffix("_id")
            kind, ident = (group if group.endswith(stem) else stem), found
            break
    action = ".".join(words)
    creates = None if ident is not None else re.sub(r"y$", "ie", group) + "s"
    return Pending(Actor.cli(), action, kind, ident, command_path, None, creates)
