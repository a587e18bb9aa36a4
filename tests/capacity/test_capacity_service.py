"""The forecast-checks job against real incidents (PostgreSQL: the math is the same on
SQLite, the route runs on both in test_capacity_api.py): a filling disk opens
``forecast.disk./`` at health's severity for the level ahead, the same round sends nothing
for a flat memory, nor for a CPU with too little history (unknown changes nothing); the
throttle lets a server be forecast once per interval; a crossing just past the warning days
keeps it open (hysteresis), the trend going away resolves it."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, select

from control_plane.capacity.jobs import ForecastJob
from control_plane.db.base import utcnow
from control_plane.db.engine import Database
from control_plane.incidents.models import Incident
from control_plane.metrics.models import MetricSample
from control_plane.settings import Settings
from tests.capacity.history import GiB, Shape, flat, mid_window_hour, write_history
from tests.support import rows

pytestmark = pytest.mark.postgres_only


async def forecast_incidents(db: Database, server_id: object) -> dict[str, Incident]:
    async with db.session() as session:
        found = await session.scalars(
            select(Incident).where(
                Incident.server_id == server_id, Incident.check.like("forecast.%")
            )
        )
        return {i.check: i for i in found.all()}


async def test_a_filling_disk_opens_its_forecast_incident_and_a_flat_one_resolves_it(
    db: Database, tmp_path: Path
) -> None:
    settings = Settings(home=tmp_path, forecast_interval_seconds=1.0)  # warning days 7
    tenant = await rows.a_tenant(db, "cap")
    server = await rows.a_server_row(db, tenant, name="cap", state="ready")
    now = utcnow()
    peak_hour = mid_window_hour(now)
    filling = Shape(
        level=90, days_to_level=5, slope=1.0, amplitude=1.0, noise=0.2, peak_hour=peak_hour
    )
    history = {
        # 85 % now: 80 % is health's; 90 % in 5 days (warning), 95 % in 10 (too far)
        "disk": filling.series(now, 30),
        "memory": Shape(level=40, slope=0.0, amplitude=5.0, seed=2).series(now, 30),
        "cpu": flat(now, 2, 30.0),  # two days: too little for a forecast
        "inodes": flat(now, 30, 10.0),
    }
    # ext4's 5 % root reserve: 85 % of what users may fill, as df and health count it
    await write_history(db, server, history, reserve=5 * GiB)

    clock = [now]
    job = ForecastJob(settings, clock=lambda: clock[0])
    clock[0] = now + timedelta(seconds=1.5)  # every server's slot of a 1 s interval has come
    assert await db.transact(job) >= 1
    opened = await forecast_incidents(db, server.id)
    assert set(opened) == {"forecast.disk./"}, {c: i.summary for c, i in opened.items()}
    disk = opened["forecast.disk./"]
    assert (disk.state, disk.severity) == ("open", "warning")
    assert "space on / forecast to reach 90% around" in disk.summary
    days = float(disk.summary.split(" days (band")[0].rsplit(" ", 1)[1])
    assert abs(days - 5) <= 1.0, disk.summary

    # throttled: nothing is due again until the next slot
    assert await db.transact(job) == 0

    # 90 % now 7.5 days out: past the 7 warning days but inside the resolve margin (1 day)
    history["disk"] = Shape(
        level=90, days_to_level=7.5, slope=1.0, amplitude=1.0, noise=0.2, peak_hour=peak_hour
    ).series(now, 30)
    await write_history(db, server, history, reserve=5 * GiB)
    clock[0] += timedelta(seconds=1.5)
    assert await db.transact(job) >= 1
    kept = (await forecast_incidents(db, server.id))["forecast.disk./"]
    assert kept.state == "open" and "in 7." in kept.summary, kept.summary

    # no raw sample names the filesystems (an agent silent for the raw tier's days): the
    # disk cannot be measured, so its incident is not resolved as if it were fine
    async with db.session() as session:
        await session.execute(delete(MetricSample).where(MetricSample.server_id == server.id))
    clock[0] += timedelta(seconds=1.5)
    assert await db.transact(job) >= 1
    assert (await forecast_incidents(db, server.id))["forecast.disk./"].state == "open"

    history["disk"] = flat(now, 30, 60.0)
    await write_history(db, server, history, reserve=5 * GiB)
    clock[0] += timedelta(seconds=1.5)
    assert await db.transact(job) >= 1
    after = await forecast_incidents(db, server.id)
    assert after["forecast.disk./"].state == "resolved"
    assert after["forecast.disk./"].resolved_by == "auto"
    assert set(after) == {"forecast.disk./"}
