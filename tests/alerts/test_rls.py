"""Row-level security on the alert tables: raw SQL in a tenant's transaction sees its own
rows, never another tenant's nor the fleet's (NULL tenant) rows."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text

from control_plane.alerts.models import AlertChannel
from control_plane.db.engine import Database
from control_plane.tenants.models import Tenant
from tests.alerts.helpers import message, notify_now

TABLES = (
    "alert_channels",
    "escalation_policies",
    "alert_notifications",
    "alert_notification_incidents",
    "alert_deliveries",
    "alert_delivery_attempts",
)


async def test_raw_sql_sees_only_the_tenants_own_alert_rows(db: Database) -> None:
    if db.dialect != "postgresql":
        pytest.skip("row-level security is a PostgreSQL feature")
    async with db.session() as session:
        mine, theirs = Tenant(name=f"a-{uuid.uuid4()}"), Tenant(name=f"b-{uuid.uuid4()}")
        session.add_all([mine, theirs])
        await session.flush()
        channels = [
            AlertChannel(tenant_id=owner, name="feed", kind="in_app", config="{}")
            for owner in (mine.id, theirs.id, None)
        ]
        session.add_all(channels)
        await session.flush()
        ids = [str(c.id) for c in channels]
    for owner, channel in zip((mine.id, theirs.id, None), ids, strict=True):
        await notify_now(db, message(owner), [channel])
    async with db.tenant_session(mine.id) as session:
        for table in TABLES:
            query = text(f"SELECT DISTINCT tenant_id FROM {table}")  # noqa: S608 (constants)
            owners = set((await session.execute(query)).scalars())
            assert owners <= {mine.id}, table
        count = await session.scalar(text("SELECT count(*) FROM alert_notifications"))
        assert count == 1
