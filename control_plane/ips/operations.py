"""What users do with an address beyond the contract's basics: list and read it, set its
warmup, read today's allowance. Routes and the CLI (through the API) sit on these."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.pagination import Page, paginate
from control_plane.errors import InvalidInput
from control_plane.ips import service, warmup
from control_plane.ips.models import IpAddress
from control_plane.ips.schemas import (
    AllowanceOut,
    IpDetailOut,
    IpEventOut,
    IpOut,
    PauseOut,
    WarmupIn,
    WarmupOut,
)
from control_plane.mailstats.service import reporting, sent_today
from control_plane.settings import Settings

START_WINDOW = timedelta(days=366)  # how far from today a plan may start


@dataclass(frozen=True)
class IpFilter:
    server_id: uuid.UUID | None = None
    role: str | None = None
    listing: str | None = None
    paused: bool | None = None


def _filtered(flt: IpFilter) -> Select[IpAddress]:
    stmt = select(IpAddress).where(IpAddress.released_at.is_(None))
    if flt.server_id is not None:
        stmt = stmt.where(IpAddress.server_id == flt.server_id)
    if flt.role is not None:
        stmt = stmt.where(IpAddress.role == flt.role)
    if flt.listing == "unchecked":
        stmt = stmt.where(IpAddress.listing.is_(None))
    elif flt.listing is not None:
        stmt = stmt.where(IpAddress.listing == flt.listing)
    if flt.paused is not None:
        held = IpAddress.paused_at.is_not(None)
        stmt = stmt.where(held if flt.paused else IpAddress.paused_at.is_(None))
    return stmt


async def list_ips(
    session: AsyncSession, flt: IpFilter, after: uuid.UUID | None, limit: int
) -> Page[IpAddress]:
    """Live addresses the session may see (a tenant's own; an admin's: all)."""
    return await paginate(session, _filtered(flt), IpAddress.id, after, limit)


def warmup_out(ip: IpAddress, day: date) -> WarmupOut:
    caps = list(warmup.schedule(ip.warmup_plan, ip.warmup_caps)) if ip.warmup_plan else None
    index = warmup.plan_day(ip, day)
    return WarmupOut(
        plan=ip.warmup_plan,
        start_date=ip.warmup_start,
        day=index + 1 if index is not None else None,
        days=len(caps) if caps is not None else None,
        today_cap=warmup.today_cap(ip, day),
        caps=caps,
        done_at=ip.warmup_done_at,
    )


def ip_out(ip: IpAddress, now: datetime) -> IpOut:
    return IpOut(
        id=ip.id,
        tenant_id=ip.tenant_id,
        server_id=ip.server_id,
        address=ip.address,
        provider=ip.provider,
        is_main=ip.is_main,
        ptr=ip.ptr,
        role=ip.role,
        dns_published=ip.dns_published,
        warmup=warmup_out(ip, now.date()),
        pause=PauseOut(
            paused=ip.paused_at is not None,
            reason=ip.paused_reason,
            by=ip.paused_by,
            at=ip.paused_at,
        ),
        listing=ip.listing or "unchecked",
        score=ip.score,
        listing_checked_at=ip.listing_checked_at,
        assigned_at=ip.assigned_at,
    )


async def detail_out(session: AsyncSession, ip: IpAddress, now: datetime) -> IpDetailOut:
    history = [IpEventOut.model_validate(e) for e in await service.events(session, ip)]
    return IpDetailOut(**ip_out(ip, now).model_dump(), events=history)


async def set_warmup(
    session: AsyncSession, ip: IpAddress, body: WarmupIn, actor: str, now: datetime
) -> None:
    """Start a plan (from ``start_date``, default today), end it (``none``) and/or set
    today's cap; all checks come first, so a refused request changes nothing. Pushes the
    new limits."""
    today = now.date()
    caps, start = _checked(body, today)
    if body.plan == "none":
        if ip.warmup_plan is not None:
            ip.warmup_plan = ip.warmup_start = ip.warmup_caps = ip.warmup_done_at = None
            await service.record_event(session, ip, "warmup", "plan removed: no cap", actor, now)
    elif body.plan is not None:
        ip.warmup_plan, ip.warmup_start, ip.warmup_done_at = body.plan, start, None
        ip.warmup_caps = json.dumps(list(caps)) if caps is not None else None
        days = len(warmup.schedule(body.plan, ip.warmup_caps))
        detail = f"plan {body.plan} from {start.isoformat()} ({days} days)"
        await service.record_event(session, ip, "warmup", detail, actor, now)
        await finish_if_done(session, ip, now)
    if body.today_cap is not None:
        ip.warmup_today_cap, ip.warmup_today_cap_day = body.today_cap, today
        detail = f"cap for {today.isoformat()} only: {body.today_cap}"
        await service.record_event(session, ip, "warmup", detail, actor, now)
    await session.flush()
    await service.push_for(session, ip, now)


def _checked(body: WarmupIn, today: date) -> tuple[tuple[int, ...] | None, date]:
    """The custom caps and the start day of a valid request; 422 naming the field else."""
    if body.plan is None and (body.caps is not None or body.start_date is not None):
        field = "body.caps" if body.caps is not None else "body.start_date"
        raise InvalidInput("caps and start_date go with a plan", field=field)
    if body.plan is None and body.today_cap is None:
        raise InvalidInput("give a plan, a today_cap, or both", field="body.plan")
    caps: tuple[int, ...] | None = None
    if body.plan == "custom":
        if body.caps is None:
            raise InvalidInput("a custom plan needs its daily caps", field="body.caps")
        caps = warmup.parse_custom(body.caps)
    elif body.caps is not None:
        raise InvalidInput("caps are only for plan 'custom'", field="body.caps")
    if body.plan == "none" and body.start_date is not None:
        raise InvalidInput("plan 'none' has no start date", field="body.start_date")
    start = body.start_date or today
    if abs(start - today) > START_WINDOW:
        raise InvalidInput("start_date must be within a year of today", field="body.start_date")
    return caps, start


async def finish_if_done(session: AsyncSession, ip: IpAddress, now: datetime) -> bool:
    """Mark the plan done once it has run past its last day (an event says so)."""
    if not warmup.finished(ip, now.date()):
        return False
    ip.warmup_done_at = now
    await service.record_event(
        session, ip, "warmup", f"plan {ip.warmup_plan} done: no daily cap", service.AUTO, now
    )
    return True


async def allowance(
    session: AsyncSession, ip: IpAddress, now: datetime, settings: Settings
) -> AllowanceOut:
    """Today's (UTC) cap, what was sent, what is left, whether sending is held, and whether
    the sent count is measured at all (the agent's mail-count reporting)."""
    day = now.date()
    cap = warmup.today_cap(ip, day)
    sent = await sent_today(session, ip, day)
    reason = service.hold_reason(ip, cap, sent)
    return AllowanceOut(
        day=day,
        cap=cap,
        sent=sent,
        remaining=max(cap - sent, 0) if cap is not None else None,
        paused=bool(reason),
        reason=reason,
        reporting=await reporting(session, ip.server_id, now, settings.mail_stats_interval_seconds),
    )
