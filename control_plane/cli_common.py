"""What the domain CLIs (health, incidents, alerts) share beyond ``control_plane.cli``.

A server or a tenant by id or by name: the API takes ids, at a shell a name is what people
remember. A server name is unique only within its tenant, so a name two tenants use is
refused (give the id). The actor incident timelines and silences name, times, and whole
paged listings.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

from control_plane.errors import InvalidInput, NotFound

# Imported by the domain CLIs, so by every `mailfleet` run: SQLAlchemy and the models come
# with the commands that look something up.
if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from control_plane.db.pagination import Page
    from control_plane.servers.models import Server
    from control_plane.tenants.models import Tenant

T = TypeVar("T")


def as_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


async def find_server(
    session: AsyncSession,
    ref: str,
    *,
    tenant_id: uuid.UUID | None = None,
    field: str | None = None,
) -> Server:
    """The server with this id, or the one with this name (in ``tenant_id`` if given)."""
    from sqlalchemy import select

    from control_plane.db.lookup import get_by_id
    from control_plane.servers.models import Server

    ident = as_uuid(ref)
    if ident is not None:
        server = await get_by_id(session, Server, ident, "server", field=field)
    else:
        stmt = select(Server).where(Server.name == ref).order_by(Server.id).limit(2)
        if tenant_id is not None:
            stmt = stmt.where(Server.tenant_id == tenant_id)
        found = (await session.scalars(stmt)).all()
        if not found:
            raise NotFound("server", repr(ref), field=field)
        if len(found) > 1:
            raise InvalidInput(
                f"more than one server is named {ref!r} (in different tenants); give its id",
                field=field,
            )
        server = found[0]
    return server


async def find_tenant(session: AsyncSession, ref: str, *, field: str | None = None) -> Tenant:
    """The tenant with this id or this (unique) name."""
    from sqlalchemy import select

    from control_plane.db.lookup import get_by_id
    from control_plane.tenants.models import Tenant

    ident = as_uuid(ref)
    if ident is not None:
        return await get_by_id(session, Tenant, ident, "tenant", field=field)
    tenant = await session.scalar(select(Tenant).where(Tenant.name == ref))
    if tenant is None:
        raise NotFound("tenant", repr(ref), field=field)
    return tenant


def cli_actor() -> str:
    """Who acts, as incident timelines and silences show it: the OS user at this CLI (the
    API shows the key's name and id)."""
    from control_plane.audit.service import Actor

    return f"{Actor.cli().user} (cli)"


def moment(value: datetime | None) -> str:
    """A stored time (UTC) in a table."""
    return f"{value:%Y-%m-%d %H:%M:%S}" if value is not None else "-"


async def every_page(fetch: Callable[[uuid.UUID | None], Awaitable[Page[T]]]) -> list[T]:
    """Every item of a keyset-paged listing: ``fetch(after)`` page after page (a CLI list
    prints the whole of it, never only the first page)."""
    found: list[T] = []
    after = None
    while True:
        page = await fetch(after)
        found += page.items
        if page.next_after is None:
            return found
        after = page.next_after
