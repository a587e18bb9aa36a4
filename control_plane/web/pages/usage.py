"""Usage: the tenant's dashboard over all its servers (or one workspace's) and each
server's usage history with its capacity forecast line, anomalies and a CSV export.

The same services as the API: ``GET /api/v1/usage`` (usage.service.fleet_usage),
``GET /api/v1/servers/{id}/usage`` (server_usage, its CSV export) and
``GET /api/v1/servers/{id}/capacity`` (capacity.service.capacity_out)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, StreamingResponse

from control_plane.capacity.forecast import HOUR, floor_hour
from control_plane.capacity.schemas import CapacityOut, ForecastOut
from control_plane.capacity.service import capacity_out
from control_plane.db.base import utcnow
from control_plane.errors import MailFleetError
from control_plane.metrics.series import filesystem_series
from control_plane.servers import service as servers
from control_plane.servers.models import Server
from control_plane.usage import export
from control_plane.usage import service as usage
from control_plane.usage.schemas import LimitOut
from control_plane.usage.series import STEP_SECONDS, TierReach
from control_plane.usage.service import Resource
from control_plane.usage.summary import Summary, summarize
from control_plane.web.charts import (
    RESOURCE_SERIES,
    Line,
    columns,
    resource_lines,
    script_json,
    series_label,
)
from control_plane.web.console import (
    Console,
    PageError,
    SignedIn,
    not_found,
    render,
    visible_server,
)
from control_plane.web.pages import NavLink
from control_plane.web.pages.fleet import RANGES
from control_plane.workspaces.models import Workspace
from control_plane.workspaces.service import get_workspace, list_workspaces

router = APIRouter(include_in_schema=False)
NAV = (NavLink("Usage", "/ui/usage", 30),)
PAGE_SIZE = 50
LIMITS_SHOWN = 5  # servers per resource in "closest to their limits"
TREND_SERVERS = 6  # servers drawn in the dashboard's trend charts: the busiest now
WORKSPACES_LISTED = 500
ANOMALIES_LISTED = 20
Range = Annotated[str, Query(alias="range", max_length=8)]


def _span(span: str) -> timedelta:
    if span not in RANGES:
        raise PageError(422, "Unknown range", f"range: pick one of {', '.join(RANGES)}.")
    return RANGES[span]


@dataclass(frozen=True)
class Trend:
    """One trend chart of the dashboard: a resource, a line per server."""

    slug: str
    title: str
    chart: str  # its JSON for the drawer


async def _trends(
    console: Console, shown: Sequence[tuple[uuid.UUID, str]], span: str
) -> list[Trend]:
    """CPU and memory per cent of each server in ``shown`` over the range (their usage)."""
    now, reach = utcnow(), TierReach.of(console.ctx.settings)
    start = now - _span(span)
    found = []
    async with console.ctx.session() as session:
        for server_id, name in shown:
            got = await usage.server_usage(session, server_id, start, now, None, reach, now)
            found.append((name, got.series))
    return [
        Trend(
            series.split("_")[0],
            title,
            script_json(
                columns(
                    [
                        Line(name, {p.t.timestamp(): round(p.avg, 2) for p in got.get(series, ())})
                        for name, got in found
                    ]
                )
            ),
        )
        for series, title in RESOURCE_SERIES.items()
    ]


def _busiest(
    limits: Mapping[Resource, Sequence[LimitOut]], page: Sequence[Server]
) -> list[tuple[uuid.UUID, str]]:
    """The servers drawn: those highest on CPU, memory and disk now, then the page's."""
    ranked = [(o.server_id, o.server_name) for r in ("cpu", "memory", "disk") for o in limits[r]]
    ranked += [(s.id, s.name) for s in page]
    return list(dict.fromkeys(ranked))[:TREND_SERVERS]


async def _dashboard_data(
    console: Console, workspace_id: uuid.UUID | None, after: uuid.UUID | None
) -> dict[str, Any]:
    tenant_id, now = console.tenant_id, utcnow()
    fresh = timedelta(seconds=console.ctx.settings.agent_unknown_after_seconds)
    try:
        async with console.ctx.session() as session:
            workspace: Workspace | None = None
            if workspace_id is not None:
                workspace = await get_workspace(session, workspace_id)
            workspaces = (await list_workspaces(session, tenant_id, None, WORKSPACES_LISTED)).items
            fleet = await usage.fleet_usage(
                session, tenant_id, workspace_id, now, fresh, LIMITS_SHOWN
            )
            page = await servers.list_servers(session, tenant_id, workspace_id, after, PAGE_SIZE)
    except MailFleetError as exc:
        raise not_found(exc) from None
    return {
        "workspace": workspace, "workspaces": workspaces, "fleet": fleet,
        "servers": page.items, "next_after": page.next_after,
        "shown": _busiest(fleet.closest_to_limits, page.items),
    }  # fmt: skip


@router.get("/ui/usage")
async def dashboard(
    request: Request,
    console: SignedIn,
    span: Range = "24h",
    workspace: uuid.UUID | None = None,
    after: uuid.UUID | None = None,
) -> HTMLResponse:
    """What the servers use now (totals, closest to their limits), their trends, and a
    link to each one's history."""
    _span(span)
    data = await _dashboard_data(console, workspace, after)
    trends = await _trends(console, data["shown"], span)
    return render(
        request, "usage.html", console=console, span=span, ranges=list(RANGES),
        trends=trends, **data,
    )  # fmt: skip


@router.get("/ui/usage/trends")
async def trends(
    request: Request, console: SignedIn, span: Range = "24h", workspace: uuid.UUID | None = None
) -> HTMLResponse:
    """The trend charts alone, for the range picker's partial refresh (htmx)."""
    _span(span)
    data = await _dashboard_data(console, workspace, None)
    found = await _trends(console, data["shown"], span)
    return render(
        request, "usage_trends.html", console=console, span=span, ranges=list(RANGES),
        trends=found, workspace=data["workspace"], shown=data["shown"],
    )  # fmt: skip


# A server's usage history.


def _series_of(f: ForecastOut) -> str:
    """The usage series a capacity resource is the per cent of."""
    if f.resource == "disk" and f.mountpoint is not None:
        return filesystem_series("fs_used_percent", f.mountpoint)
    if f.resource == "inodes" and f.mountpoint is not None:
        return filesystem_series("fs_inodes_percent", f.mountpoint)
    return f"{f.resource}_percent"


def history_chart(found: usage.Usage, capacity: CapacityOut, ahead: timedelta) -> dict[str, Any]:
    """The chart's series, each charted series' forecast line from the fitted value at
    the end of the newest hour as far ahead as the chart looks back, and the anomalies in
    range as marks on their series."""
    lines = resource_lines(found.series)
    color = {line.label: i for i, line in enumerate(lines)}
    start, end = found.start.timestamp(), found.end.timestamp()
    origin = floor_hour(capacity.computed_at) + HOUR
    for f in capacity.forecasts:
        name = _series_of(f)
        label = series_label(name) if name in found.series else None
        if label is None:
            continue  # not charted (inodes)
        if f.fitted_percent is not None and f.slope_per_day is not None:
            days = ahead / timedelta(days=1)
            values = {
                origin.timestamp(): round(f.fitted_percent, 2),
                (origin + ahead).timestamp(): round(f.fitted_percent + f.slope_per_day * days, 2),
            }
            lines.append(Line(f"{label} forecast", values, "forecast", color[label]))
        marks = {
            a.at.timestamp(): round(a.value_percent, 2)
            for a in capacity.anomalies
            if (a.resource, a.mountpoint) == (f.resource, f.mountpoint)
            and start <= a.at.timestamp() < end
        }
        if marks:
            lines.append(Line(f"{label} anomaly", marks, "marks", color[label]))
    return columns(lines)


@dataclass(frozen=True)
class SummaryRow:
    label: str
    summary: Summary


async def _history(console: Console, server: Server, span: str) -> dict[str, Any]:
    now, length = utcnow(), _span(span)
    reach = TierReach.of(console.ctx.settings)
    async with console.ctx.session() as session:
        found = await usage.server_usage(session, server.id, now - length, now, None, reach, now)
        capacity = await capacity_out(session, server, console.ctx.settings, now)
    chart = history_chart(found, capacity, length)
    seconds = STEP_SECONDS.get(found.step)
    summaries = [
        SummaryRow(label, summarize(series, seconds))
        for name, series in sorted(found.series.items())
        if (label := series_label(name)) is not None  # the charted series'
    ]
    return {
        "server": server, "span": span, "ranges": list(RANGES), "step": found.step,
        "chart": script_json(chart), "capacity": capacity, "summaries": summaries,
        "anomalies": capacity.anomalies[:ANOMALIES_LISTED],
    }  # fmt: skip


@router.get("/ui/usage/servers/{server_id}")
async def server_history(
    request: Request, console: SignedIn, server_id: uuid.UUID, span: Range = "7d"
) -> HTMLResponse:
    """One server's usage over the range: chart with forecast lines and anomalies, each
    series' summary, the capacity forecasts and the export."""
    server = await visible_server(console, server_id)
    try:
        data = await _history(console, server, span)
    except MailFleetError as exc:
        raise not_found(exc) from None
    return render(request, "usage_server.html", console=console, **data)


@router.get("/ui/usage/servers/{server_id}/chart")
async def server_history_chart(
    request: Request, console: SignedIn, server_id: uuid.UUID, span: Range = "7d"
) -> HTMLResponse:
    """The history chart alone, for the range picker (htmx)."""
    server = await visible_server(console, server_id)
    try:
        data = await _history(console, server, span)
    except MailFleetError as exc:
        raise not_found(exc) from None
    return render(request, "usage_chart.html", console=console, **data)


@router.get("/ui/usage/servers/{server_id}/export.csv")
async def server_export(
    console: SignedIn, server_id: uuid.UUID, span: Range = "7d"
) -> StreamingResponse:
    """The range's figures as the API's CSV export (``?format=csv``) gives them."""
    now, length = utcnow(), _span(span)
    reach = TierReach.of(console.ctx.settings)
    try:
        async with console.ctx.session() as session:
            found = await usage.server_usage(
                session, server_id, now - length, now, None, reach, now
            )
    except MailFleetError as exc:
        raise not_found(exc) from None
    return StreamingResponse(
        export.chunks(found, "csv"),
        media_type=export.MEDIA_TYPES["csv"],
        headers={"Content-Disposition": f'attachment; filename="{export.filename(found, "csv")}"'},
    )
