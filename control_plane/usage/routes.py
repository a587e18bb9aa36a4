"""HTTP routes of control_plane.usage (thin over its service)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response, StreamingResponse
from pydantic import AwareDatetime

from control_plane.api.context import Ctx
from control_plane.db.base import utcnow
from control_plane.schemas import Limit
from control_plane.usage import export, service
from control_plane.usage.schemas import FleetUsageOut, UsageOut
from control_plane.usage.series import TierReach, UsageStep

router = APIRouter(tags=["usage"])
STEP_HELP = "raw (14 days), 1m/5m/15m (90 days), 1h/1d (2 years); default: from the range."


@router.get("/api/v1/servers/{server_id}/usage", response_model=UsageOut)
async def server_usage(
    server_id: uuid.UUID,
    ctx: Ctx,
    start: Annotated[
        AwareDatetime | None, Query(alias="from", description="Default: 7 days before to.")
    ] = None,
    end: Annotated[AwareDatetime | None, Query(alias="to", description="Default: now.")] = None,
    step: Annotated[UsageStep | None, Query(description=STEP_HELP)] = None,
    format: Annotated[
        export.ExportFormat | None,
        Query(description="csv or json: download the series as records instead."),
    ] = None,
) -> Response:
    """Each resource's series at the step, from the tier that holds it, with a summary per
    series (average, p95, max, peak hour and weekday, trend per day)."""
    async with ctx.session() as session:
        usage = await service.server_usage(
            session, server_id, start, end, step, TierReach.of(ctx.settings), utcnow()
        )
    if format is None:  # the body UsageOut describes, serialized without a model per point
        return Response(usage.json(), media_type="application/json")
    return StreamingResponse(
        export.chunks(usage, format),
        media_type=export.MEDIA_TYPES[format],
        headers={"Content-Disposition": f'attachment; filename="{export.filename(usage, format)}"'},
    )


@router.get("/api/v1/usage")
async def fleet_usage(
    ctx: Ctx,
    tenant_id: uuid.UUID | None = None,
    workspace_id: uuid.UUID | None = None,
    limit: Limit = 10,
) -> FleetUsageOut:
    """Totals over the caller's servers now (newest samples) and, per disk, memory and CPU,
    the ``limit`` servers closest to their limits."""
    fresh = timedelta(seconds=ctx.settings.agent_unknown_after_seconds)
    async with ctx.session() as session:
        return await service.fleet_usage(session, tenant_id, workspace_id, utcnow(), fresh, limit)
