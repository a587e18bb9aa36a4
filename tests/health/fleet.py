"""Tenants and ready servers made straight in the database, for the health-core tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select

from control_plane.db.engine import Database
from control_plane.health.models import HealthChange, HealthCheck, HealthSchedule
from control_plane.servers.models import Server
from control_plane.settings import Settings
from tests.support import rows

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def fast_settings(settings: Settings, **overrides: Any) -> Settings:
    """The session's settings with about-a-second health timers."""
    values: dict[str, Any] = {
        "health_interval_seconds": 1.0,
        "health_flap_seconds": 1.0,
        "health_probe_timeout_seconds": 0.5,
        "health_lease_seconds": 5.0,
        "health_tick_seconds": 0.1,
        **overrides,
    }
    return settings.model_copy(update=values)


async def a_tenant(db: Database) -> uuid.UUID:
    return await rows.a_tenant(db, "health")


async def a_server(
    db: Database,
    tenant_id: uuid.UUID,
    *,
    state: str = "ready",
    mail_stack: str = "none",
    ipv4: str | None = None,
    mail_hostname: str | None = None,
    heartbeat: datetime | None = None,
) -> uuid.UUID:
    """A server the sweep watches (ready, its agent enrolled), with a name of its own."""
    server = await rows.a_server_row(
        db,
        tenant_id,
        name=f"mx-{uuid.uuid4().hex[:8]}",
        state=state,
        mail_stack=mail_stack,
        ipv4=ipv4,
        mail_hostname=mail_hostname,
        agent_state="enrolled",
        last_heartbeat_at=heartbeat,
    )
    return server.id


async def checks_by_name(db: Database, server_id: uuid.UUID) -> dict[str, HealthCheck]:
    async with db.session() as session:
        rows = await session.scalars(select(HealthCheck).where(HealthCheck.server_id == server_id))
        return {row.check: row for row in rows}


async def changes(db: Database, server_id: uuid.UUID) -> list[HealthChange]:
    async with db.session() as session:
        rows = await session.scalars(
            select(HealthChange)
            .where(HealthChange.server_id == server_id)
            .order_by(HealthChange.at, HealthChange.id)
        )
        return list(rows)


async def plan(db: Database, server_id: uuid.UUID) -> HealthSchedule | None:
    async with db.session() as session:
        return await session.get(HealthSchedule, server_id)


async def park_other_servers(db: Database) -> None:
    """Tests share a database: servers other tests left ready are taken off the sweep's
    list, so a sweep here checks only this test's servers."""
    async with db.session() as session:
        await session.execute(delete(HealthSchedule))
        for server in await session.scalars(select(Server).where(Server.state == "ready")):
            server.state = "failed"
