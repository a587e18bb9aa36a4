"""The escalation job tells the periodic runner when its next incident falls due, so a
first notification goes out when its group window closes, not at the runner's next tick."""

from __future__ import annotations

from datetime import timedelta

from control_plane.db.base import utcnow
from control_plane.db.engine import Database
from control_plane.incidents import escalation
from control_plane.settings import Settings
from tests.incidents.helpers import a_server, a_tenant, observe, signal


async def test_next_due_is_when_a_new_incidents_group_window_closes(
    db: Database, settings: Settings
) -> None:
    window = timedelta(seconds=settings.incident_group_seconds)
    tenant = await a_tenant(db)
    server = await a_server(db, tenant)
    opened = utcnow()
    await observe(db, opened, signal(tenant, server, "smtp.25"))
    next_due = escalation.next_due_job(settings)
    async with db.session() as session:
        due = await next_due(session)
    # Other tests' incidents share the database and may fall due sooner; never later.
    assert due is not None
    assert utcnow() < due <= opened + window + timedelta(milliseconds=1)
