"""Fleet-wide figures read from the database at scrape time (true across replicas)."""

from __future__ import annotations

from datetime import timedelta

from prometheus_client import CollectorRegistry, Gauge
from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.alerts.metrics import add_alert_gauges
from control_plane.commands.models import Command
from control_plane.db.base import utcnow
from control_plane.health.schedule import check_counts, lag_seconds
from control_plane.incidents.metrics import add_incident_gauges
from control_plane.servers.models import Server


async def fleet_registry(session: AsyncSession, unknown_after: timedelta) -> CollectorRegistry:
    registry = CollectorRegistry()
    cutoff = utcnow() - unknown_after
    status = case(
        (Server.agent_state == "revoked", "revoked"),
        (Server.last_heartbeat_at.is_(None), "pending"),
        (Server.last_heartbeat_at >= cutoff, "online"),
        else_="unknown",
    )
    agents = Gauge("mailfleet_agents", "Agents by status.", ["status"], registry=registry)
    for name in ("pending", "online", "unknown", "revoked"):
        agents.labels(name).set(0)
    for name, count in (await session.execute(select(status, func.count()).group_by(status))).all():
        agents.labels(name).set(count)
    queued = Gauge("mailfleet_commands", "Commands by state.", ["state"], registry=registry)
    for state, count in (
        await session.execute(select(Command.state, func.count()).group_by(Command.state))
    ).all():
        queued.labels(state).set(count)
    lag = Gauge(
        "mailfleet_health_sweep_lag_seconds",
        "How far behind its schedule the health sweep is: the oldest due, unclaimed server.",
        registry=registry,
    )
    lag.set(await lag_seconds(session, utcnow()))
    checks = Gauge(
        "mailfleet_health_checks",
        "Health checks by confirmed state and severity.",
        ["state", "severity"],
        registry=registry,
    )
    for state, severity, count in await check_counts(session):
        checks.labels(state, severity).set(count)
    await add_alert_gauges(session, registry, utcnow())
    await add_incident_gauges(session, registry, utcnow())
    return registry
