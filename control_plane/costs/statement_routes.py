"""A workspace's monthly statement (CSV or a printable HTML page) for the agency's client."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response

from control_plane.api.context import Ctx
from control_plane.costs import statements
from control_plane.costs.engine import MONTH_PATTERN, month_of
from control_plane.db.base import utcnow
from control_plane.workspaces.service import get_workspace

router = APIRouter(prefix="/api/v1/workspaces", tags=["costs"])

Month = Annotated[
    str,
    Query(pattern=MONTH_PATTERN, description="e.g. 2026-11; default: this month, to date"),
]


@router.get(
    "/{workspace_id}/statement",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}, "text/html": {}}}},
)
async def workspace_statement(
    workspace_id: uuid.UUID,
    ctx: Ctx,
    month: Month | None = None,
    format: Literal["csv", "html"] = "html",
) -> Response:
    """Billed amounts (cost with the workspace's markup) per server and resource, totals."""
    now = utcnow()
    first = month_of(month, now.date())  # the query's pattern checked it
    async with ctx.session() as session:
        workspace = await get_workspace(session, workspace_id)
        found = await statements.statement(
            session, workspace, first, now, ctx.settings.cost_currency
        )
    name = f"statement-{workspace_id}-{first:%Y-%m}.{format}"
    headers = {"Content-Disposition": f'attachment; filename="{name}"'}
    if format == "csv":
        return Response(statements.as_csv(found), media_type="text/csv; charset=utf-8",
                        headers=headers)  # fmt: skip
    return Response(statements.as_html(found, now), media_type="text/html; charset=utf-8")
