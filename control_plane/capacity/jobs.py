"""The ``forecast-checks`` periodic job: each ready server's forecasts once per
``MAILFLEET_FORECAST_INTERVAL_SECONDS``, in its own slot of the interval.

Throttle: each server has a stable slot in the interval (health's ``next_slot``: an offset
from its id), so a fleet's forecasts spread over the hour instead of arriving together; a
round forecasts the servers whose slot fell since the previous round. The only state is
when this process's previous round ran (in memory), so there is no table (and migration)
for it. What that costs: a process starting up forecasts nothing in its first round (each
server waits for its slot, at most one interval: no burst of every server at start), and
with several replicas each forecasts every server once per interval — harmless, since a
failing signal for an open incident only updates it and ok resolves only an open one,
but the work is done once per replica (hourly, a few milliseconds of fitting and ~10
hourly series read per server).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.capacity import service
from control_plane.db.base import utcnow
from control_plane.health.schedule import CHECKED_STATES, next_slot
from control_plane.servers.models import Server
from control_plane.settings import Settings

log = logging.getLogger(__name__)


class ForecastJob:
    """A ``periodic.Job`` run: forecasts the servers whose slot fell since the last round."""

    def __init__(self, settings: Settings, clock: Callable[[], datetime] = utcnow) -> None:
        self.settings, self.clock = settings, clock
        self.covered_until = clock()

    async def __call__(self, session: AsyncSession) -> int:
        now = self.clock()
        interval = self.settings.forecast_interval_seconds
        since = max(self.covered_until, now - timedelta(seconds=interval))
        ids = (
            await session.scalars(select(Server.id).where(Server.state.in_(CHECKED_STATES)))
        ).all()
        done = 0
        for server_id in ids:
            if next_slot(server_id, since, interval) > now:
                continue
            server = await session.get(Server, server_id)
            if server is None:
                continue
            try:  # one server's failure (rolled back alone) must not stop the others
                async with session.begin_nested():
                    await service.check_server(session, server, self.settings, now)
                done += 1
            except Exception:
                log.exception("forecast checks of server %s failed", server_id)
        self.covered_until = now
        return done
