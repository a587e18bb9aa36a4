"""Two transactions opening the same incident at once make one incident; /metrics counts
unresolved incidents and how late the escalation engine is."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry

from control_plane.db.engine import Database
from control_plane.incidents import escalation, service
from control_plane.incidents.metrics import add_incident_gauges
from tests.incidents.alerting import channel, policy
from tests.incidents.helpers import a_server, a_tenant, incidents_of, kinds, observe, signal

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


async def test_racing_transactions_open_one_incident(db: Database) -> None:
    tenant = await a_tenant(db)
    server = await a_server(db, tenant)
    inserted = asyncio.Event()

    async def first() -> None:
        async with db.session() as session:
            await service.observe(session, [signal(tenant, server, "smtp.25")], T0)
            inserted.set()
            await asyncio.sleep(0.5)  # the second is waiting on our row (or SQLite's lock)

    async def second() -> None:
        await inserted.wait()
        later = T0 + timedelta(seconds=1)
        await observe(db, later, signal(tenant, server, "smtp.25", severity="critical"))

    await asyncio.gather(first(), second())
    [incident] = await incidents_of(db, server)
    assert incident.state == "open" and incident.last_seen_at == T0 + timedelta(seconds=1)
    assert await kinds(db, incident.id) == ["triggered"]


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    found = registry.get_sample_value(name, labels)
    assert found is not None
    return found


async def gauges(db: Database, now: datetime) -> CollectorRegistry:
    registry = CollectorRegistry()
    async with db.session() as session:
        await add_incident_gauges(session, registry, now)
    return registry


async def test_metrics_count_unresolved_incidents_and_escalation_lag(db: Database) -> None:
    tenant = await a_tenant(db)
    server = await a_server(db, tenant)
    await policy(db, tenant, [([await channel(db, tenant, "ops")], 5)], repeat=1)
    future = T0 + timedelta(days=3650)  # later than every other test's incident
    before = await gauges(db, future)
    await observe(
        db,
        future,
        signal(tenant, server, "smtp.25"),
        signal(tenant, server, "disk./", severity="warning"),
    )
    after = await gauges(db, future)
    for severity in ("critical", "warning"):
        labels = {"state": "open", "severity": severity}
        assert value(after, "mailfleet_incidents", **labels) == (
            value(before, "mailfleet_incidents", **labels) + 1
        )
    async with db.session() as session:
        await escalation.escalate_due(session, future, group_seconds=0)
    late = await gauges(db, future + timedelta(minutes=7))
    assert value(late, "mailfleet_incident_escalation_lag_seconds") >= 120.0
