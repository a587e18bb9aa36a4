"""The fleet overview and a server's page (facts, resource chart, checks, events); the
server page's other sections come from their own modules (``SERVER_SECTIONS``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, get_args

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.costs.engine import day_start, month_start, next_month
from control_plane.costs.report import cost_report
from control_plane.db.base import utcnow
from control_plane.errors import MailFleetError
from control_plane.health import service as health
from control_plane.ips.service import sending_ips
from control_plane.provisioning.events import list_events
from control_plane.provisioning.workflow import PROVISION_STEPS
from control_plane.servers import service as servers
from control_plane.servers.models import Server
from control_plane.servers.schemas import ProvisionState, ServerOut
from control_plane.servers.status import server_out
from control_plane.tenants.service import get_tenant, tenant_names
from control_plane.usage import service as usage
from control_plane.usage.series import Point, TierReach
from control_plane.web.charts import columns, resource_lines, script_json
from control_plane.web.console import Console, PageError, SignedIn, not_found, render
from control_plane.web.pages import NavLink, server_sections

router = APIRouter(include_in_schema=False)
NAV = (NavLink("Fleet", "/ui/", 0),)
PAGE_SIZE = 50
STATES: tuple[str, ...] = get_args(ProvisionState)
RANGES: dict[str, timedelta] = {
    "1h": timedelta(hours=1),
    "6h": timedelta(hours=6),
    "24h": timedelta(days=1),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
    "90d": timedelta(days=90),
}


@dataclass(frozen=True)
class Row:
    server: ServerOut
    health: str
    sending_ip: str | None
    cost: str | None  # month to date, e.g. "12.34 USD"


def _out(console: Console, server: Server, now: datetime) -> ServerOut:
    unknown_after = timedelta(seconds=console.ctx.settings.agent_unknown_after_seconds)
    return server_out(server, now, unknown_after)


async def month_to_date(
    session: AsyncSession, server_ids: list[uuid.UUID], now: datetime
) -> dict[str, str]:
    """These servers' billed cost this month so far, by server id (costs' own report, on
    their ledger alone: a page of the fleet costs what its 50 servers do, not the fleet)."""
    if not server_ids:
        return {}
    first = month_start(now.date())
    start, end = day_start(first), day_start(next_month(first))
    report = await cost_report(
        session, start, end, now, None, None, "server", server_ids=server_ids
    )
    return {group.key: f"{group.billed:.2f} {group.currency}" for group in report.groups}


@router.get("/ui/")
async def fleet(
    request: Request,
    console: SignedIn,
    state: Annotated[str | None, Query(max_length=24)] = None,
    after: uuid.UUID | None = None,
) -> HTMLResponse:
    """Every server on show with its state, agent, health, sending IP, plan and cost."""
    state = state or None
    if state is not None and state not in STATES:
        raise PageError(422, "Unknown state", f"There is no server state {state!r}.")
    tenant_id, now = console.tenant_id, utcnow()
    async with console.ctx.session() as session:
        tenant = await get_tenant(session, tenant_id) if tenant_id is not None else None
        page = await servers.list_servers(session, tenant_id, None, after, PAGE_SIZE, state)
        ids = [s.id for s in page.items]
        healths = await health.overall_by_server(session, ids)
        ips = await sending_ips(session, ids)
        costs = await month_to_date(session, ids, now)
        counts = await servers.count_by_state(session, tenant_id)
        owners = await tenant_names(session, {s.tenant_id for s in page.items})
    rows = [
        Row(_out(console, s, now), healths[s.id], ips.get(s.id, s.ipv4), costs.get(str(s.id)))
        for s in page.items
    ]
    return render(
        request, "fleet.html", console=console, tenant=tenant, rows=rows, counts=counts,
        total=sum(counts.values()), states=STATES, state=state, owners=owners,
        next_after=page.next_after,
    )  # fmt: skip


def chart_data(series: Mapping[str, Iterable[Point]]) -> dict[str, Any]:
    """uPlot's columns of the server's resource series (``charts.resource_lines``)."""
    return columns(resource_lines(series))


async def _chart(console: Console, server_id: uuid.UUID, span: str) -> dict[str, Any]:
    if span not in RANGES:
        raise PageError(422, "Unknown range", f"Pick one of {', '.join(RANGES)}.")
    now = utcnow()
    reach = TierReach.of(console.ctx.settings)
    async with console.ctx.session() as session:
        found = await usage.server_usage(
            session, server_id, now - RANGES[span], now, None, reach, now
        )
    return {
        "server_id": server_id,
        "span": span,
        "ranges": list(RANGES),
        "step": found.step,
        # inside <script>: "<" escaped, so no agent-sent mountpoint can close the tag
        "chart": script_json(chart_data(found.series)),
    }


@router.get("/ui/servers/{server_id}")
async def server_page(
    request: Request,
    console: SignedIn,
    server_id: uuid.UUID,
    span: Annotated[str, Query(alias="range", max_length=8)] = "24h",
) -> HTMLResponse:
    """One server: its resource chart, health checks, events and cost so far this month."""
    now = utcnow()
    try:
        async with console.ctx.session() as session:
            server = await servers.get_server(session, server_id)
            rows = await health.checks_of(session, server_id)
            events = (await list_events(session, server_id, None, 100)).items
            ip = (await sending_ips(session, [server_id])).get(server_id, server.ipv4)
            cost = (await month_to_date(session, [server_id], now)).get(str(server_id))
        chart = await _chart(console, server_id, span)
    except MailFleetError as exc:
        raise not_found(exc) from None
    return render(
        request, "server.html", console=console, server=_out(console, server, now),
        checks=[health.check_out(row) for row in rows], health=health.overall(rows),
        events=events, sending_ip=ip, cost=cost, steps=PROVISION_STEPS,
        sections=server_sections(), **chart,
    )  # fmt: skip


@router.get("/ui/servers/{server_id}/chart")
async def server_chart(
    request: Request,
    console: SignedIn,
    server_id: uuid.UUID,
    span: Annotated[str, Query(alias="range", max_length=8)] = "24h",
) -> HTMLResponse:
    """The chart alone, for the range picker's partial refresh (htmx)."""
    try:
        chart = await _chart(console, server_id, span)
    except MailFleetError as exc:
        raise not_found(exc) from None
    return render(request, "chart.html", console=console, **chart)
