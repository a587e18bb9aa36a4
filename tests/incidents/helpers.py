"""Making tenants, servers and incidents straight in the database, and signals for them."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any, Literal

import httpx
from sqlalchemy import select

from control_plane.db.base import utcnow
from control_plane.db.engine import Database
from control_plane.incidents import service
from control_plane.incidents.models import Incident, IncidentEvent
from control_plane.incidents.signals import Signal
from tests.support import rows


async def a_tenant(db: Database) -> uuid.UUID:
    return await rows.a_tenant(db, "inc")


async def a_server(db: Database, tenant_id: uuid.UUID | str, name: str = "mx1") -> uuid.UUID:
    return (await rows.a_server_row(db, tenant_id, name=name)).id


def signal(
    tenant_id: uuid.UUID | str,
    server_id: uuid.UUID | str,
    check: str,
    state: Literal["ok", "failing", "unknown"] = "failing",
    severity: Literal["critical", "warning", "info"] = "critical",
    summary: str | None = None,
) -> Signal:
    return Signal(
        tenant_id=uuid.UUID(str(tenant_id)),
        subject_kind="server",
        subject_id=str(server_id),
        check=check,
        state=state,
        severity=severity,
        summary=summary or f"{check} is {state}",
        server_id=uuid.UUID(str(server_id)),
    )


async def observe(db: Database, now: datetime, *signals: Signal) -> None:
    async with db.session() as session:
        await service.observe(session, signals, now)


async def incidents_of(db: Database, server_id: uuid.UUID | str) -> list[Incident]:
    async with db.session() as session:
        return list(
            (
                await session.scalars(
                    select(Incident)
                    .where(Incident.server_id == uuid.UUID(str(server_id)))
                    .order_by(Incident.opened_at, Incident.id)
                )
            ).all()
        )


async def open_incident(db: Database, server_id: uuid.UUID | str, check: str) -> Incident:
    found = [
        i for i in await incidents_of(db, server_id) if i.check == check and i.state != "resolved"
    ]
    assert len(found) == 1, found
    return found[0]


async def events_of(db: Database, incident_id: uuid.UUID) -> list[IncidentEvent]:
    async with db.session() as session:
        return list(
            (
                await session.scalars(
                    select(IncidentEvent)
                    .where(IncidentEvent.incident_id == incident_id)
                    .order_by(IncidentEvent.id)
                )
            ).all()
        )


async def kinds(db: Database, incident_id: uuid.UUID) -> list[str]:
    return [e.kind for e in await events_of(db, incident_id)]


async def walk_objects(client: httpx.AsyncClient, tenant_id: str, headers: dict[str, str],
                       server_id: str) -> dict[str, str]:  # fmt: skip
    """An incident, a silence and a maintenance window of the tenant, for the route walk in
    tests/control_plane/test_cross_tenant.py (no route makes incidents: signals do)."""
    transport = client._transport
    assert isinstance(transport, httpx.ASGITransport)
    app: Any = transport.app
    db: Database = app.state.db  # the app under test's own database
    await observe(db, utcnow(), signal(tenant_id, server_id, "smtp.25", summary="victim"))
    incident = await open_incident(db, server_id, "smtp.25")
    ends = (utcnow() + timedelta(hours=1)).isoformat()
    silence = await client.post(
        "/api/v1/silences", json={"check": "smtp.*", "ends_at": ends, "comment": "victim"},
        headers=headers,
    )  # fmt: skip
    assert silence.status_code == 201, silence.text
    window = await client.post(
        f"/api/v1/servers/{server_id}/maintenance-windows", json={"ends_at": ends},
        headers=headers,
    )  # fmt: skip
    assert window.status_code == 201, window.text
    return {
        "incident_id": str(incident.id),
        "silence_id": silence.json()["id"],
        "window_id": window.json()["id"],
    }
