"""Who is calling, and the database session their scope allows.

Every route takes a ``Ctx`` (any valid key) or an ``AdminCtx`` (admin keys only). Tenant keys
get sessions that can only see their tenant's rows; the route code is the same either way.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.api_keys.service import verify_key_cached
from control_plane.audit.service import PENDING_KEY, SAFE_METHODS, Actor, Pending, api_pending
from control_plane.db.engine import Database
from control_plane.errors import Forbidden, InvalidInput, NotFound, Unauthorized
from control_plane.gateway.hub import AgentHub
from control_plane.provisioning.registry import ProviderRegistry
from control_plane.settings import Settings
from control_plane.vault.client import Vault
from control_plane.vault.pki import AgentPki

ADMIN_SCOPE_EXTENSION = "x-mailfleet-scope"
_bearer = HTTPBearer(auto_error=False, description="An API key: mf_admin_… or mf_live_…")


@dataclass(frozen=True)
class Principal:
    key_id: uuid.UUID
    tenant_id: uuid.UUID | None
    key_name: str = ""
    key_hint: str = ""

    @property
    def is_admin(self) -> bool:
        return self.tenant_id is None


@dataclass(frozen=True)
class RequestContext:
    principal: Principal
    db: Database
    vault: Vault
    settings: Settings
    pki: AgentPki
    hub: AgentHub
    providers: ProviderRegistry
    wake_workflow: Callable[[], None]
    actor: Actor
    audit: Pending | None = None  # this request's audit record, if it may change something

    def session(self) -> AbstractAsyncContextManager[AsyncSession]:
        """A transaction scoped to what the caller may see; its changes are audit-logged."""
        return _audited(self.db, self.principal.tenant_id, self.audit)

    def owning_tenant(
        self, requested: uuid.UUID | None, field: str = "body.tenant_id"
    ) -> uuid.UUID:
        """The tenant a new object belongs to: named by admins, implied for tenant keys."""
        own = self.principal.tenant_id
        if own is None:
            if requested is None:
                raise InvalidInput("tenant_id is required with an admin key", field=field)
            return requested
        if requested is not None and requested != own:
            raise NotFound("tenant", requested, field=field)
        return own


@asynccontextmanager
async def _audited(
    db: Database, tenant_id: uuid.UUID | None, audit: Pending | None
) -> AsyncIterator[AsyncSession]:
    scoped = db.session() if tenant_id is None else db.tenant_session(tenant_id)
    async with scoped as session:
        if audit is not None:
            session.info[PENDING_KEY] = audit  # see control_plane.audit.capture
        yield session


def database(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


async def authenticate(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("send an API key as 'Authorization: Bearer <key>'")
    seconds = request.app.state.settings.api_key_cache_seconds
    record = await verify_key_cached(database(request), credentials.credentials, seconds)
    if record is None:
        raise Unauthorized("the API key is invalid, expired or revoked")
    return Principal(
        key_id=record.id, tenant_id=record.tenant_id, key_name=record.name, key_hint=record.hint
    )


def request_context(
    request: Request, principal: Annotated[Principal, Depends(authenticate)]
) -> RequestContext:
    state = request.app.state
    actor = Actor(
        kind="api_key",
        address=request.client.host if request.client else "unknown",
        key_id=principal.key_id,
        key_name=principal.key_name,
        key_hint=principal.key_hint,
        tenant_id=principal.tenant_id,
    )
    audit = None
    route = request.scope.get("route")
    if request.method not in SAFE_METHODS and isinstance(route, APIRoute):
        status = route.status_code or 200
        audit = api_pending(actor, request.method, route.path, request.path_params, status)
        request.state.audit = audit  # the middleware records it if no transaction did
    return RequestContext(
        principal=principal,
        db=database(request),
        vault=state.vault,
        settings=state.settings,
        pki=state.pki,
        hub=state.hub,
        providers=state.providers,
        wake_workflow=state.wake_workflow,
        actor=actor,
        audit=audit,
    )


def admin_context(ctx: Annotated[RequestContext, Depends(request_context)]) -> RequestContext:
    if not ctx.principal.is_admin:
        raise Forbidden("this needs an admin key")
    return ctx


Ctx = Annotated[RequestContext, Depends(request_context)]
AdminCtx = Annotated[RequestContext, Depends(admin_context)]
