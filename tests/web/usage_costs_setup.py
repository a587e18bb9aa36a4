"""What the usage and costs browser tests set up, through MailFleet's own services: days of
real agent samples (a forecast needs three days of hours), a workspace with a priced
server in the metering ledger, and that month's figures as the costs service gives them."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from control_plane.costs.engine import day_start, month_start
from control_plane.costs.report import MonthFigures, month_figures
from control_plane.db.base import utcnow
from control_plane.metrics.partitions import make_ahead
from control_plane.workspaces.schemas import WorkspaceCreate
from control_plane.workspaces.service import create_workspace
from tests.control_plane.costs.ledger import a_priced_server
from tests.web.console import ConsoleServer

SAMPLE_MINUTES = 5  # ConsoleServer.agent_samples' spacing


def days_of_samples(
    console: ConsoleServer, tenant_id: uuid.UUID, server_id: uuid.UUID, days: float
) -> int:
    """``days`` of the agent's samples up to now (their days' partitions made first)."""

    async def partitions() -> None:
        today = utcnow().date()
        async with console.db.session() as session:
            await make_ahead(session, today - timedelta(days=int(days) + 1), today)

    console.run(partitions())
    return console.agent_samples(tenant_id, server_id, int(days * 24 * 60 / SAMPLE_MINUTES))


def workspace(console: ConsoleServer, tenant_id: uuid.UUID, name: str) -> uuid.UUID:
    async def make() -> uuid.UUID:
        async with console.db.tenant_session(tenant_id) as session:
            return (await create_workspace(session, tenant_id, WorkspaceCreate(name=name))).id

    return console.run(make())


def priced_server(console: ConsoleServer, tenant_id: uuid.UUID, workspace_id: uuid.UUID) -> None:
    """A server at 720.00 USD a month held for the first hour of this month, or the first
    half of the month so far if that is less: ended, so its figures stay put while the test
    reads them (a running one's move every half minute)."""
    now = utcnow()
    start = day_start(month_start(now.date()))
    end = start + min(timedelta(hours=1), (now - start) / 2)

    async def make() -> None:
        async with console.db.session() as session:
            await a_priced_server(session, tenant_id, workspace_id, start, end)

    console.run(make())


def month_of(
    console: ConsoleServer, tenant_id: uuid.UUID, workspace_id: uuid.UUID | None
) -> list[MonthFigures]:
    async def read(now: datetime) -> list[MonthFigures]:
        async with console.db.session() as session:
            return await month_figures(
                session, tenant_id=tenant_id, workspace_id=workspace_id, month=now.date(), now=now
            )

    return console.run(read(utcnow()))
