"""Signals become incidents: one open per (subject, check), the worst severity, resolved by
ok, untouched by a plain unknown; the database refuses a second open one by itself."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.exc import IntegrityError

from control_plane.db.engine import Database
from control_plane.incidents import service
from control_plane.incidents.models import Incident
from control_plane.servers.models import Server
from tests.incidents.helpers import (
    a_server,
    a_tenant,
    events_of,
    incidents_of,
    kinds,
    observe,
    open_incident,
    signal,
)

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


async def test_failing_twice_is_one_incident_with_the_worst_severity(db: Database) -> None:
    tenant = await a_tenant(db)
    server = await a_server(db, tenant)
    await observe(db, T0, signal(tenant, server, "disk./", severity="warning", summary="91 %"))
    await observe(
        db, T0 + timedelta(seconds=5), signal(tenant, server, "disk./", severity="critical")
    )
    await observe(
        db, T0 + timedelta(seconds=9), signal(tenant, server, "disk./", severity="warning")
    )
    [incident] = await incidents_of(db, server)
    assert (incident.state, incident.severity) == ("open", "critical")
    assert incident.opened_at == T0
    assert incident.last_seen_at == T0 + timedelta(seconds=9)
    assert incident.subject_kind == "server" and incident.subject_id == str(server)
    assert await kinds(db, incident.id) == ["triggered", "updated"]
    assert "warning → critical" in (await events_of(db, incident.id))[1].detail


async def test_unknown_changes_nothing_unless_critical(db: Database) -> None:
    tenant = await a_tenant(db)
    server = await a_server(db, tenant)
    await observe(db, T0, signal(tenant, server, "smtp.25", "unknown", "warning"))
    assert await incidents_of(db, server) == []

    await observe(db, T0, signal(tenant, server, "smtp.25", "failing", "critical"))
    await observe(db, T0 + timedelta(seconds=1), signal(tenant, server, "smtp.25", "unknown"))
    [incident] = await incidents_of(db, server)
    assert incident.state == "open"  # an unknown is not ok: it does not resolve

    await observe(db, T0, signal(tenant, server, "imap.993", "unknown", "critical"))
    opened = await open_incident(db, server, "imap.993")  # three unknowns in a row
    assert "could not check" in (await events_of(db, opened.id))[0].detail


async def test_ok_resolves_automatically_and_a_new_failure_opens_a_new_incident(
    db: Database,
) -> None:
    tenant = await a_tenant(db)
    server = await a_server(db, tenant)
    await observe(db, T0, signal(tenant, server, "smtp.587"))
    await observe(db, T0 + timedelta(minutes=3), signal(tenant, server, "smtp.587", "ok", "info"))
    [incident] = await incidents_of(db, server)
    assert incident.state == "resolved"
    assert incident.resolved_by == "auto" and incident.resolved_at == T0 + timedelta(minutes=3)
    assert incident.next_escalation_at is None
    resolved = (await events_of(db, incident.id))[-1]
    assert (resolved.kind, resolved.detail, resolved.actor) == (
        "resolved",
        "resolved automatically",
        None,
    )

    await observe(db, T0 + timedelta(minutes=5), signal(tenant, server, "smtp.587", "ok", "info"))
    await observe(db, T0 + timedelta(minutes=6), signal(tenant, server, "smtp.587"))
    first, second = await incidents_of(db, server)
    assert first.id == incident.id and first.state == "resolved"
    assert second.state == "open" and second.opened_at == T0 + timedelta(minutes=6)


def _cpu_incident(
    tenant: uuid.UUID, server: uuid.UUID, state: str, summary: str, at: datetime
) -> Incident:
    """A ``cpu`` incident of ``server`` added straight to the table, past ``observe``."""
    return Incident(
        tenant_id=tenant,
        subject_kind="server",
        subject_id=str(server),
        check="cpu",
        state=state,
        severity="warning",
        summary=summary,
        server_id=server,
        opened_at=at,
        last_seen_at=at,
    )


async def test_the_database_refuses_two_open_incidents_for_one_key(db: Database) -> None:
    tenant = await a_tenant(db)
    server = await a_server(db, tenant)
    await observe(db, T0, signal(tenant, server, "cpu"))
    with pytest.raises(IntegrityError):
        async with db.session() as session:
            session.add(_cpu_incident(tenant, server, "acknowledged", "a second one", T0))
    async with db.session() as session:  # a resolved one beside it is fine
        session.add(_cpu_incident(tenant, server, "resolved", "an old one", T0 - timedelta(days=1)))
    assert len(await incidents_of(db, server)) == 2


async def test_incidents_of_a_deleted_server_resolve_with_that_reason(db: Database) -> None:
    tenant = await a_tenant(db)
    server = await a_server(db, tenant)
    kept = await a_server(db, tenant, "mx2")
    await observe(db, T0, signal(tenant, server, "agent.link"), signal(tenant, kept, "agent.link"))
    async with db.session() as session:
        await session.delete(await session.get(Server, server))
    async with db.session() as session:
        assert await service.resolve_orphans(session, T0 + timedelta(minutes=1)) >= 1
    [gone] = await incidents_of(db, server)
    assert gone.state == "resolved" and gone.resolved_by == "auto"
    assert gone.resolution == "the server no longer exists"
    assert (await open_incident(db, kept, "agent.link")).state == "open"
