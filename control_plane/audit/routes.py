"""Reading the audit log. There is no route that changes or deletes an event."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import AwareDatetime

from control_plane.api.context import Ctx
from control_plane.audit import service
from control_plane.audit.schemas import AuditEventOut
from control_plane.schemas import After, Limit, PageOut

router = APIRouter(prefix="/api/v1/audit-events", tags=["audit"])


@router.get("")
async def list_audit_events(
    ctx: Ctx,
    object_type: str | None = None,
    object_id: uuid.UUID | None = None,
    key_id: uuid.UUID | None = None,
    tenant_id: uuid.UUID | None = None,
    since: Annotated[
        AwareDatetime | None, Query(alias="from", description="Events at or after this time.")
    ] = None,
    until: Annotated[
        AwareDatetime | None, Query(alias="to", description="Events before this time.")
    ] = None,
    after: After = None,
    limit: Limit = 100,
    newest_first: bool = False,
) -> PageOut[AuditEventOut]:
    """Oldest first, or (``newest_first=true``) newest first. A tenant key sees its
    tenant's events, an admin key every event."""
    async with ctx.session() as session:
        page = await service.list_events(
            session,
            object_type=object_type,
            object_id=object_id,
            key_id=key_id,
            tenant_id=tenant_id,
            since=since,
            until=until,
            after=after,
            limit=limit,
            newest_first=newest_first,
        )
        items = [AuditEventOut.model_validate(e) for e in page.items]
        return PageOut(items=items, next_after=page.next_after)


@router.get("/{audit_event_id}")
async def get_audit_event(audit_event_id: uuid.UUID, ctx: Ctx) -> AuditEventOut:
    async with ctx.session() as session:
        return AuditEventOut.model_validate(await service.get_event(session, audit_event_id))
