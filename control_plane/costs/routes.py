"""Cost reports: per workspace, server, resource or day; month to date; projection."""

from __future__ import annotations

import uuid
from dataclasses import asdict, replace
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response, StreamingResponse
from pydantic import AwareDatetime

from control_plane.api.context import Ctx
from control_plane.costs import export
from control_plane.costs.engine import day_start, month_start
from control_plane.costs.report import cost_report
from control_plane.costs.schemas import CostReportOut
from control_plane.db.base import utcnow
from control_plane.errors import NotFound
from control_plane.workspaces.models import Workspace

router = APIRouter(prefix="/api/v1/costs", tags=["costs"])


@router.get("", response_model=CostReportOut)
async def costs(
    ctx: Ctx,
    start: Annotated[
        AwareDatetime | None, Query(alias="from", description="Default: this month's start.")
    ] = None,
    end: Annotated[AwareDatetime | None, Query(alias="to", description="Default: now.")] = None,
    tenant_id: uuid.UUID | None = None,
    workspace_id: uuid.UUID | None = None,
    group_by: Annotated[
        str, Query(description="workspace, server, resource or day.")
    ] = "workspace",
    format: Annotated[
        Literal["json", "csv"], Query(description="csv: download the groups.")
    ] = "json",
) -> Response:
    """What the caller's servers, addresses, backups and bandwidth cost in [from, to),
    grouped, with what each workspace is billed, the idle part, the month to date and its
    projection to month end."""
    now = utcnow()
    start_at = start or day_start(month_start(now.date()))
    end_at = end or now
    own = ctx.principal.tenant_id  # a tenant key's session sees its own tenant only
    async with ctx.session() as session:
        if workspace_id is not None and await session.get(Workspace, workspace_id) is None:
            raise NotFound("workspace", workspace_id, field="query.workspace_id")
        report = await cost_report(
            session, start_at, end_at, now, tenant_id or own, workspace_id, group_by
        )
    if own is not None:
        report = replace(report, tenant_id=own)
    if format == "csv":
        return StreamingResponse(
            export.chunks(report),
            media_type=export.MEDIA_TYPE,
            headers={"Content-Disposition": f'attachment; filename="{export.filename(report)}"'},
        )
    return Response(
        CostReportOut.model_validate(asdict(report)).model_dump_json(),
        media_type="application/json",
    )
