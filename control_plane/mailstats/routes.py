"""Mail counts per day for an address (``/ips/{ip}/mail-stats``) and for a mail domain
(``/domains/{domain_id}/mail-stats``), from the figures the agents report."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from itertools import groupby
from typing import Annotated, TypeVar

from fastapi import APIRouter, Query
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.api.context import Ctx
from control_plane.db.base import utcnow
from control_plane.errors import InvalidInput
from control_plane.ips import service as ips
from control_plane.mail import service as mail
from control_plane.mailstats import service
from control_plane.mailstats.models import MailCount
from control_plane.mailstats.schemas import (
    DomainMailDay,
    DomainMailStatsOut,
    IpMailDay,
    IpMailStatsOut,
    MailFigures,
    ReportingOut,
    SenderDomainFigures,
    SourceIpFigures,
)

router = APIRouter(prefix="/api/v1", tags=["ips"])
DEFAULT_DAYS = 30
MAX_DAYS = 400
First = Annotated[date | None, Query(alias="from", description="First day (UTC); 30 days ago.")]
Last = Annotated[date | None, Query(alias="to", description="Last day (UTC), included; today.")]
F = TypeVar("F", bound=MailFigures)


def day_range(first: date | None, last: date | None) -> tuple[date, date]:
    last = last or utcnow().date()
    if first is None:
        first = (
            last - timedelta(days=DEFAULT_DAYS - 1) if last.toordinal() > DEFAULT_DAYS else date.min
        )
    if first > last:
        raise InvalidInput("from must not be after to", field="query.from")
    if (last - first).days >= MAX_DAYS:
        raise InvalidInput(f"at most {MAX_DAYS} days per query", field="query.from")
    return first, last


def figures(make: Callable[..., F], rows: Sequence[MailCount], **extra: object) -> F:
    sent = sum(row.sent for row in rows)
    bounced = sum(row.bounced for row in rows)
    return make(
        sent=sent,
        deferred=sum(row.deferred for row in rows),
        bounced=bounced,
        bounce_rate=service.bounce_rate(sent, bounced),
        **extra,
    )


def per_day(rows: Sequence[MailCount], make: Callable[..., F], by: str) -> list[F]:
    """A day's figures each, with its rows one by one as ``by_<by>`` (rows come sorted by
    day, then by that column)."""
    part = SenderDomainFigures if by == "sender_domain" else SourceIpFigures
    return [
        figures(
            make,
            group,
            day=day,
            **{f"by_{by}": [figures(part, [r], **{by: getattr(r, by)}) for r in group]},
        )
        for day, group in ((day, list(g)) for day, g in groupby(rows, key=lambda r: r.day))
    ]


async def _reporting(ctx: Ctx, session: AsyncSession, server_id: uuid.UUID) -> ReportingOut:
    interval = ctx.settings.mail_stats_interval_seconds
    return await service.reporting(session, server_id, utcnow(), interval)


@router.get("/ips/{ip}/mail-stats")
async def ip_mail_stats(ip: str, ctx: Ctx, start: First = None, end: Last = None) -> IpMailStatsOut:
    """Per day: messages sent, deferred and bounced from this address, with the bounce rate,
    by sender domain (only while the address is on its current server)."""
    first, last = day_range(start, end)
    async with ctx.session() as session:
        row = await ips.get_live(session, ip)
        rows = await service.rows_for_ip(session, row, first, last)
        return IpMailStatsOut(
            ip=row.address,
            server_id=row.server_id,
            reporting=await _reporting(ctx, session, row.server_id),
            first_day=first,
            last_day=last,
            totals=figures(MailFigures, rows),
            days=per_day(rows, IpMailDay, "sender_domain"),
        )


@router.get("/domains/{domain_id}/mail-stats")
async def domain_mail_stats(
    domain_id: uuid.UUID, ctx: Ctx, start: First = None, end: Last = None
) -> DomainMailStatsOut:
    """Per day: messages with this domain's envelope senders sent, deferred and bounced by its
    server, with the bounce rate, by source address."""
    first, last = day_range(start, end)
    async with ctx.session() as session:
        domain = await mail.get_domain(session, domain_id)
        rows = await service.rows_for_domain(session, domain.server_id, domain.name, first, last)
        return DomainMailStatsOut(
            domain_id=domain.id,
            domain=domain.name,
            server_id=domain.server_id,
            reporting=await _reporting(ctx, session, domain.server_id),
            first_day=first,
            last_day=last,
            totals=figures(MailFigures, rows),
            days=per_day(rows, DomainMailDay, "source_ip"),
        )
