"""Tenants and servers inserted straight into the database, for tests of what runs below the
API (health, incidents, resources): no API keys, no provisioning, no agent."""

from __future__ import annotations

import uuid
from typing import Any

from control_plane.db.engine import Database
from control_plane.servers.models import Server
from control_plane.tenants.models import Tenant


async def a_tenant(db: Database, prefix: str = "t") -> uuid.UUID:
    """A new tenant (its name unique: tenants share the session's database)."""
    async with db.session() as session:
        tenant = Tenant(name=f"{prefix}-{uuid.uuid4()}")
        session.add(tenant)
        await session.flush()
        return tenant.id


async def a_server_row(db: Database, tenant_id: uuid.UUID | str, **fields: Any) -> Server:
    """A server row of ``tenant_id`` (``provider`` manual unless given), committed; the row
    stays readable after its session (the sessions do not expire on commit)."""
    async with db.session() as session:
        server = Server(tenant_id=uuid.UUID(str(tenant_id)), **{"provider": "manual", **fields})
        session.add(server)
        await session.flush()
        return server
