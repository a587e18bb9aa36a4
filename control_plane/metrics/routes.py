from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import AwareDatetime

from control_plane.api.context import AdminCtx, Ctx
from control_plane.db.base import utcnow
from control_plane.errors import InvalidInput
from control_plane.metrics import service
from control_plane.metrics.fleet import fleet_registry
from control_plane.metrics.schemas import MetricsOut
from control_plane.servers.service import get_server

router = APIRouter(tags=["metrics"])
MAX_RANGE = timedelta(days=90)


@router.get("/api/v1/servers/{server_id}/metrics")
async def server_metrics(
    server_id: uuid.UUID,
    ctx: Ctx,
    start: Annotated[AwareDatetime | None, Query(alias="from")] = None,
    end: Annotated[AwareDatetime | None, Query(alias="to")] = None,
    step: service.Step = "1m",
) -> MetricsOut:
    """Raw samples (`step=raw`) or avg/min/max/count per step from the 1-minute rollups."""
    end_at = end or utcnow()
    start_at = start or end_at - timedelta(hours=1)
    if start_at >= end_at:
        raise InvalidInput("from must be before to", field="query.from")
    if end_at - start_at > MAX_RANGE:
        raise InvalidInput("at most 90 days per query", field="query.from")
    async with ctx.session() as session:
        await get_server(session, server_id)
        out = MetricsOut(server_id=server_id, start=start_at, end=end_at, step=step)
        if step == "raw":
            out.samples = await service.raw_samples(session, server_id, start_at, end_at)
        else:
            out.series = await service.rolled_up(session, server_id, start_at, end_at, step)
    return out


@router.get("/metrics", response_class=PlainTextResponse)
async def prometheus(request: Request, ctx: AdminCtx) -> PlainTextResponse:
    """Prometheus text: this replica's gateway figures and fleet-wide counts (admin key)."""
    unknown_after = timedelta(seconds=ctx.settings.agent_unknown_after_seconds)
    async with ctx.db.session() as session:
        fleet = await fleet_registry(session, unknown_after)
    local: CollectorRegistry | None = getattr(request.app.state, "telemetry_registry", None)
    body = generate_latest(fleet) + (generate_latest(local) if local is not None else b"")
    return PlainTextResponse(body, media_type=CONTENT_TYPE_LATEST)
