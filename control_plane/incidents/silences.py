"""Silences and maintenance windows: made, listed, ended early. What they hold back is
decided in suppression.py when a notification is due."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.base import utcnow
from control_plane.db.lookup import get_by_id
from control_plane.db.pagination import Page, paginate
from control_plane.errors import InvalidInput, NotFound
from control_plane.incidents.models import MaintenanceWindow, Silence
from control_plane.incidents.schemas import MaintenanceWindowIn, SilenceIn, SilenceOut
from control_plane.servers.models import Server


def _span(
    starts_at: datetime | None, ends_at: datetime, now: datetime
) -> tuple[datetime, datetime]:
    start = starts_at or now
    if ends_at <= start:
        raise InvalidInput("ends_at must be after starts_at", field="body.ends_at")
    if ends_at <= now:
        raise InvalidInput("ends_at is in the past", field="body.ends_at")
    return start, ends_at


async def create_silence(
    session: AsyncSession, tenant_id: uuid.UUID, body: SilenceIn, actor: str, now: datetime
) -> Silence:
    if body.server_id is None and body.check is None and body.severity is None:
        raise InvalidInput(
            "a silence needs at least one matcher: server_id, check or severity", field="body"
        )
    if body.check is not None and "*" in body.check[:-1]:
        raise InvalidInput("'*' may only end a check pattern", field="body.check")
    if body.server_id is not None:
        server = await get_by_id(session, Server, body.server_id, "server", field="body.server_id")
        if server.tenant_id != tenant_id:
            raise InvalidInput("the server belongs to another tenant", field="body.server_id")
    starts_at, ends_at = _span(body.starts_at, body.ends_at, now)
    silence = Silence(
        tenant_id=tenant_id,
        server_id=body.server_id,
        check=body.check,
        severity=body.severity,
        starts_at=starts_at,
        ends_at=ends_at,
        created_by=actor,
        comment=body.comment,
    )
    session.add(silence)
    await session.flush()
    return silence


async def list_silences(
    session: AsyncSession,
    *,
    active_at: datetime | None,
    after: uuid.UUID | None,
    limit: int,
) -> Page[Silence]:
    stmt: Select[tuple[Silence]] = select(Silence)
    if active_at is not None:
        stmt = stmt.where(Silence.starts_at <= active_at, Silence.ends_at > active_at)
    return await paginate(session, stmt, Silence.id, after, limit)


async def get_silence(session: AsyncSession, silence_id: uuid.UUID) -> Silence:
    return await get_by_id(session, Silence, silence_id, "silence")


async def expire_silence(session: AsyncSession, silence: Silence, now: datetime) -> Silence:
    """End it now (a silence that has ended stays ended)."""
    if silence.ends_at > now:
        silence.ends_at = max(now, silence.starts_at)
    await session.flush()
    return silence


async def create_window(
    session: AsyncSession, server: Server, body: MaintenanceWindowIn, actor: str, now: datetime
) -> MaintenanceWindow:
    starts_at, ends_at = _span(body.starts_at, body.ends_at, now)
    window = MaintenanceWindow(
        tenant_id=server.tenant_id,
        server_id=server.id,
        starts_at=starts_at,
        ends_at=ends_at,
        reason=body.reason,
        created_by=actor,
    )
    session.add(window)
    await session.flush()
    return window


async def list_windows(
    session: AsyncSession, server: Server, after: uuid.UUID | None, limit: int
) -> Page[MaintenanceWindow]:
    stmt = select(MaintenanceWindow).where(MaintenanceWindow.server_id == server.id)
    return await paginate(session, stmt, MaintenanceWindow.id, after, limit)


async def get_window(
    session: AsyncSession, server: Server, window_id: uuid.UUID
) -> MaintenanceWindow:
    window = await get_by_id(session, MaintenanceWindow, window_id, "maintenance window")
    if window.server_id != server.id:
        raise NotFound("maintenance window", window_id)
    return window


def silence_out(silence: Silence) -> SilenceOut:
    now = utcnow()
    active = silence.starts_at <= now < silence.ends_at
    return SilenceOut.model_validate(
        {
            **{c: getattr(silence, c) for c in SilenceOut.model_fields if c != "active"},
            "active": active,
        }
    )
