"""Rows owned by a tenant or by the fleet (``tenant_id`` NULL): channels and escalation
policies are both, and are named, listed and looked up the same way."""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.alerts.models import AlertChannel, EscalationPolicy
from control_plane.errors import Conflict

Owned = TypeVar("Owned", AlertChannel, EscalationPolicy)


def same_tenant(column: Any, tenant_id: uuid.UUID | None) -> ColumnElement[bool]:
    """Rows of ``tenant_id``, or the fleet's own (NULL) rows: ``= NULL`` matches nothing."""
    return column.is_(None) if tenant_id is None else column == tenant_id  # type: ignore[no-any-return]


async def list_owned(
    session: AsyncSession, model: type[Owned], tenant_id: uuid.UUID | None = None
) -> list[Owned]:
    """Every row the caller may see (row-level security narrows a tenant key's), or only
    ``tenant_id``'s."""
    stmt = select(model).order_by(model.id)
    if tenant_id is not None:
        stmt = stmt.where(model.tenant_id == tenant_id)
    return list((await session.scalars(stmt)).all())


async def unique_name(
    session: AsyncSession,
    model: type[Owned],
    tenant_id: uuid.UUID | None,
    name: str,
    own: uuid.UUID | None,
    what: str,
) -> None:
    """409 naming ``body.name`` when another row of the same owner has ``name`` (``own``
    is the row being renamed, which may keep its name)."""
    found = await session.scalar(
        select(model.id).where(model.name == name, same_tenant(model.tenant_id, tenant_id))
    )
    if found is not None and found != own:
        raise Conflict(f"a {what} named {name!r} exists already", field="body.name")
