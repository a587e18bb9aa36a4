"""Incident figures for /metrics, read from the database (true across replicas)."""

from __future__ import annotations

from datetime import datetime

from prometheus_client import CollectorRegistry, Gauge
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.incidents.models import OPEN_STATES, Incident

SEVERITIES = ("critical", "warning", "info")


async def add_incident_gauges(
    session: AsyncSession, registry: CollectorRegistry, now: datetime
) -> None:
    unresolved = Gauge(
        "mailfleet_incidents",
        "Unresolved incidents by state and severity.",
        ["state", "severity"],
        registry=registry,
    )
    for state in OPEN_STATES:
        for severity in SEVERITIES:
            unresolved.labels(state, severity).set(0)
    counts = await session.execute(
        select(Incident.state, Incident.severity, func.count())
        .where(Incident.state.in_(OPEN_STATES))
        .group_by(Incident.state, Incident.severity)
    )
    for state, severity, count in counts.all():
        unresolved.labels(state, severity).set(count)
    # Pending first notifications are due only after their group window: the lag counts
    # escalations already under way, so the engine stalling shows without false alarms.
    oldest = await session.scalar(
        select(func.min(Incident.next_escalation_at)).where(
            Incident.state == "open", Incident.escalation_step.is_not(None)
        )
    )
    lag = Gauge(
        "mailfleet_incident_escalation_lag_seconds",
        "How long the most overdue escalation step has been due (0: none).",
        registry=registry,
    )
    lag.set(max((now - oldest).total_seconds(), 0.0) if oldest is not None else 0.0)
