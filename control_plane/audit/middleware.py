"""Records what no transaction recorded: refused and failed attempts, and changes made
outside the database (an agent, Vault), with the status the caller got.

Successful changes are recorded in their own transaction (capture.py); this only looks at
requests whose ``Pending`` record is still unwritten once the answer is sent.
"""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from control_plane.audit.service import SAFE_METHODS, Pending, new_event
from control_plane.db.engine import Database, to_completion

log = logging.getLogger(__name__)


class AuditMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        status = 500  # what the server-error handler answers if the app raises

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            pending = scope.get("state", {}).get("audit")
            if isinstance(pending, Pending) and not pending.written:
                await to_completion(_write(scope["app"].state.db, pending, status))


async def _write(db: Database, pending: Pending, status: int) -> None:
    tenant_id = pending.actor.tenant_id
    try:
        scoped = db.session() if tenant_id is None else db.tenant_session(tenant_id)
        async with scoped as session:
            session.add(
                new_event(
                    pending.actor,
                    pending.action,
                    pending.object_type,
                    pending.object_id,
                    request=pending.request,
                    status=status,
                    succeeded=status < 400,
                )
            )
        pending.written = True
    except Exception:
        log.exception("could not record %s by key %s", pending.action, pending.actor.key_id)
