"""HTTP routes of control_plane.capacity (thin over its service)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from control_plane.api.context import Ctx
from control_plane.capacity import service
from control_plane.capacity.schemas import CapacityOut
from control_plane.db.base import utcnow
from control_plane.db.lookup import get_by_id
from control_plane.servers.models import Server

router = APIRouter(tags=["capacity"])


@router.get("/api/v1/servers/{server_id}/capacity")
async def get_capacity(
    server_id: uuid.UUID,
    ctx: Ctx,
    window_days: Annotated[
        float | None,
        Query(
            ge=1,
            le=365,
            description="Days of history fitted (default: MAILFLEET_FORECAST_WINDOW_DAYS).",
        ),
    ] = None,
) -> CapacityOut:
    """When CPU, memory and each filesystem's space and inodes cross 80/90/95/100 % (with a
    band), and the hours outside each one's seasonal baseline."""
    async with ctx.session() as session:
        server = await get_by_id(session, Server, server_id, "server")
        return await service.capacity_out(session, server, ctx.settings, utcnow(), window_days)
