"""Tenant isolation, twice over.

A tenant-scoped session (1) adds ``tenant_id = :current`` to every ORM query touching a
tenant-scoped table and stamps new rows with the tenant, and (2) on PostgreSQL switches each
transaction to the ``mailfleet_tenant`` role with the tenant id in a transaction-local
setting, so the row-level security policies hold even for SQL written without a filter.
"""

from __future__ import annotations

import functools
import uuid
from typing import Any, ClassVar

from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction, with_loader_criteria

TENANT_ROLE = "mailfleet_tenant"
TENANT_SETTING = "mailfleet.tenant_id"
SESSION_TENANT_KEY = "tenant_id"


class CrossTenantWrite(Exception):
    """A tenant-scoped session tried to write another tenant's row."""


class TenantScoped:
    """Base for models visible only to their tenant; ``__tenant_key__`` names the column."""

    __tenant_key__: ClassVar[str] = "tenant_id"


@functools.cache
def _scoped_classes() -> tuple[type[TenantScoped], ...]:
    from control_plane.db.base import Base  # the registry is complete once queries run

    return tuple(m.class_ for m in Base.registry.mappers if issubclass(m.class_, TenantScoped))


def current_tenant(session: Session) -> uuid.UUID | None:
    value = session.info.get(SESSION_TENANT_KEY)
    return value if isinstance(value, uuid.UUID) else None


@event.listens_for(Session, "do_orm_execute")
def _filter_by_tenant(state: ORMExecuteState) -> None:
    tenant_id = current_tenant(state.session)
    if tenant_id is None or not (state.is_select or state.is_update or state.is_delete):
        return
    if state.is_column_load or state.is_relationship_load:
        return
    state.statement = state.statement.options(
        *(
            with_loader_criteria(cls, getattr(cls, cls.__tenant_key__) == tenant_id)
            for cls in _scoped_classes()
        )
    )


@event.listens_for(Session, "before_flush")
def _stamp_new_rows(session: Session, flush_context: Any, instances: Any) -> None:
    tenant_id = current_tenant(session)
    if tenant_id is None:
        return
    for obj in (*session.new, *session.dirty):
        if not isinstance(obj, TenantScoped):
            continue
        key = obj.__tenant_key__
        owner = getattr(obj, key, None)
        if owner is None and obj in session.new:
            setattr(obj, key, tenant_id)
        elif owner != tenant_id:
            raise CrossTenantWrite(f"{type(obj).__name__} belongs to another tenant")


@event.listens_for(Session, "after_begin")
def _enter_tenant_role(session: Session, transaction: SessionTransaction, conn: Connection) -> None:
    tenant_id = current_tenant(session)
    if tenant_id is None or conn.dialect.name != "postgresql":
        return
    conn.execute(text(f"SET LOCAL ROLE {TENANT_ROLE}"))
    conn.execute(
        text("SELECT set_config(:name, :value, true)"),
        {"name": TENANT_SETTING, "value": str(tenant_id)},
    )
