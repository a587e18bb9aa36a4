"""What holds a notification back: silences (server, check exact or prefix, severity, in
their time span), a server's maintenance window, and inhibition by an unreachable server."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from control_plane.db.engine import Database
from control_plane.incidents import suppression
from control_plane.incidents.models import MaintenanceWindow, Silence
from tests.incidents.helpers import a_server, a_tenant, observe, open_incident, signal

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def test_check_patterns() -> None:
    assert suppression.check_matches(None, "disk./")
    assert suppression.check_matches("disk.*", "disk./var")
    assert suppression.check_matches("*", "smtp.25")
    assert suppression.check_matches("smtp.25", "smtp.25")
    assert not suppression.check_matches("smtp.25", "smtp.250")
    assert not suppression.check_matches("disk.*", "inodes./")
    assert all(
        suppression.is_inhibitable(c)
        for c in ("disk./", "inodes./var", "memory", "cpu", "mailu.queue")
    )
    assert not any(suppression.is_inhibitable(c) for c in ("smtp.25", "agent.link", "tls.expiry"))


async def add(db: Database, row: Silence | MaintenanceWindow) -> None:
    async with db.session() as session:
        session.add(row)


def silence(tenant: uuid.UUID, **matchers: object) -> Silence:
    return Silence(
        tenant_id=tenant,
        starts_at=T0 - timedelta(minutes=1),
        ends_at=T0 + timedelta(hours=1),
        created_by="ops (key)",
        comment="moving racks",
        **matchers,
    )


async def held(db: Database, server: uuid.UUID, check: str, at: datetime = T0) -> str | None:
    incident = await open_incident(db, server, check)
    async with db.session() as session:
        return await suppression.hold(session, incident, at)


async def test_silence_matchers(db: Database) -> None:
    tenant = await a_tenant(db)
    server, other = await a_server(db, tenant), await a_server(db, tenant, "mx2")
    await observe(
        db,
        T0,
        signal(tenant, server, "disk./", severity="warning"),
        signal(tenant, server, "smtp.25"),
        signal(tenant, other, "disk./", severity="warning"),
    )
    assert await held(db, server, "disk./") is None
    await add(db, silence(tenant, server_id=server, check="disk.*", severity="warning"))
    reason = await held(db, server, "disk./")
    assert reason is not None and "silence" in reason and "moving racks" in reason
    assert await held(db, server, "smtp.25") is None  # another check
    assert await held(db, other, "disk./") is None  # another server
    assert await held(db, server, "disk./", T0 + timedelta(hours=2)) is None  # it has ended
    assert await held(db, server, "disk./", T0 - timedelta(minutes=5)) is None  # not begun

    await add(db, silence(tenant, severity="critical"))  # every critical of the tenant
    assert await held(db, server, "smtp.25") is not None
    assert await held(db, other, "disk./") is None  # a warning

    stranger = await a_tenant(db)  # another tenant's silence never matches
    await add(db, silence(stranger, check="*"))
    assert await held(db, other, "disk./") is None


async def test_maintenance_window_holds_every_check_of_its_server(db: Database) -> None:
    tenant = await a_tenant(db)
    server, other = await a_server(db, tenant), await a_server(db, tenant, "mx2")
    await observe(db, T0, signal(tenant, server, "smtp.25"), signal(tenant, other, "smtp.25"))
    await add(
        db,
        MaintenanceWindow(
            tenant_id=tenant,
            server_id=server,
            starts_at=T0,
            ends_at=T0 + timedelta(minutes=30),
            reason="kernel upgrade",
            created_by="ops",
        ),
    )
    reason = await held(db, server, "smtp.25")
    assert reason is not None and "maintenance window" in reason and "kernel upgrade" in reason
    assert await held(db, other, "smtp.25") is None
    assert await held(db, server, "smtp.25", T0 + timedelta(minutes=30)) is None


async def test_inhibition_needs_the_agent_and_smtp_both_failing(db: Database) -> None:
    tenant = await a_tenant(db)
    server = await a_server(db, tenant)
    await observe(
        db,
        T0,
        signal(tenant, server, "disk./"),
        signal(tenant, server, "mailu.services"),
        signal(tenant, server, "tls.expiry"),
        signal(tenant, server, "agent.link"),
    )
    assert await held(db, server, "disk./") is None  # the agent alone being down is news
    await observe(db, T0, signal(tenant, server, "smtp.25"))
    for check in ("disk./", "mailu.services"):
        reason = await held(db, server, check)
        assert reason is not None and reason.startswith("inhibited")
    assert await held(db, server, "tls.expiry") is None
    assert await held(db, server, "agent.link") is None
    await observe(db, T0, signal(tenant, server, "agent.link", "ok", "info"))
    assert await held(db, server, "disk./") is None
