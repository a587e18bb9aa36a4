"""Mail counts: what the agents report, and what others read (warmup allowance, routes).

Figures are whole-day totals per (server, UTC day, source address, sender domain), replaced
with each report: a result delivered twice, or a day reported again as it grows, leaves the
latest totals and nothing counted twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.ips.models import IpAddress
from control_plane.mailstats.models import MailCount, MailStatsReport
from control_plane.mailstats.schemas import AgentCount, ReportingOut
from control_plane.servers.models import Server


def messages(sent: int, bounced: int) -> int:
    """Messages that reached a verdict: a deferral is tried again and ends in one of these,
    so counting it too would count one message twice."""
    return sent + bounced


def bounce_rate(sent: int, bounced: int) -> float | None:
    total = messages(sent, bounced)
    return bounced / total if total else None


async def sent_today(session: AsyncSession, ip: IpAddress, day: date) -> int:
    """Messages that left, or tried to leave for good, from ``ip`` on ``day``: sent + bounced.

    A bounce used a delivery (a connection, a remote server's verdict) just as a delivery
    did, so it counts against a warmup cap; a deferral is retried and is counted when the
    retry ends in sent or bounced, so counting it too would count one message twice.
    """
    total = await session.scalar(
        select(func.coalesce(func.sum(MailCount.sent + MailCount.bounced), 0)).where(
            MailCount.server_id == ip.server_id,
            MailCount.source_ip == ip.address,
            MailCount.day == day,
        )
    )
    return int(total or 0)


async def replace_days(
    session: AsyncSession, server: Server, counts: Sequence[AgentCount]
) -> set[date]:
    """Make the server's rows of every day in ``counts`` exactly ``counts`` (days the report
    does not name are left as they are: an agent that lost its state does not erase them)."""
    merged: dict[tuple[date, str, str], list[int]] = {}
    for count in counts:
        key = (count.day, count.source_ip, count.sender_domain.lower())
        figures = merged.setdefault(key, [0, 0, 0])
        figures[0] += count.sent
        figures[1] += count.deferred
        figures[2] += count.bounced
    days = {day for day, _, _ in merged}
    if not days:
        return days
    await session.execute(
        delete(MailCount)
        .where(MailCount.server_id == server.id, MailCount.day.in_(days))
        .execution_options(synchronize_session=False)
    )
    session.add_all(
        MailCount(
            tenant_id=server.tenant_id,
            server_id=server.id,
            day=day,
            source_ip=source_ip,
            sender_domain=domain,
            sent=sent,
            deferred=deferred,
            bounced=bounced,
        )
        for (day, source_ip, domain), (sent, deferred, bounced) in merged.items()
    )
    await session.flush()
    return days


async def totals_by_source(
    session: AsyncSession, server_id: uuid.UUID, day: date
) -> dict[str, tuple[int, int, int]]:
    """source address → (sent, deferred, bounced) of the server's ``day``."""
    rows = await session.execute(
        select(
            MailCount.source_ip,
            func.sum(MailCount.sent),
            func.sum(MailCount.deferred),
            func.sum(MailCount.bounced),
        )
        .where(MailCount.server_id == server_id, MailCount.day == day)
        .group_by(MailCount.source_ip)
    )
    return {ip: (int(s), int(d), int(b)) for ip, s, d, b in rows.all()}


async def rows_for_ip(
    session: AsyncSession, ip: IpAddress, first: date, last: date
) -> list[MailCount]:
    """The address's rows on its current server, oldest first (another server's, or another
    tenant's, use of the same address is not its history)."""
    return list(
        await session.scalars(
            select(MailCount)
            .where(
                MailCount.server_id == ip.server_id,
                MailCount.source_ip == ip.address,
                MailCount.day.between(first, last),
            )
            .order_by(MailCount.day, MailCount.sender_domain)
        )
    )


async def rows_for_domain(
    session: AsyncSession, server_id: uuid.UUID, domain: str, first: date, last: date
) -> list[MailCount]:
    """The rows of mail sent from ``domain`` by its server, oldest first."""
    return list(
        await session.scalars(
            select(MailCount)
            .where(
                MailCount.server_id == server_id,
                MailCount.sender_domain == domain.lower(),
                MailCount.day.between(first, last),
            )
            .order_by(MailCount.day, MailCount.source_ip)
        )
    )


async def _report_row(session: AsyncSession, server: Server) -> MailStatsReport:
    row = await session.get(MailStatsReport, server.id)
    if row is None:
        row = MailStatsReport(tenant_id=server.tenant_id, server_id=server.id)
        session.add(row)
    return row


async def note_report(
    session: AsyncSession, server: Server, now: datetime, log_found: bool, lines_read: int
) -> None:
    row = await _report_row(session, server)
    row.reported_at, row.log_found, row.lines_read = now, log_found, lines_read
    await session.flush()


async def note_failure(session: AsyncSession, server: Server, now: datetime, error: str) -> None:
    row = await _report_row(session, server)
    row.failed_at, row.error = now, error[:2000]
    await session.flush()


async def reporting(
    session: AsyncSession, server_id: uuid.UUID, now: datetime, interval_seconds: float
) -> ReportingOut:
    """Whether the figures are being measured: ``reporting``; ``no_log`` (the agent answers
    but finds no Postfix log: no figures are not zero mail); ``failing`` (its last answer was
    an error); ``stale`` (no answer for three intervals); ``never``."""
    row = await session.get(MailStatsReport, server_id)
    if row is None or (row.reported_at is None and row.failed_at is None):
        return ReportingOut(state="never")
    out = ReportingOut(
        state="reporting", reported_at=row.reported_at, failed_at=row.failed_at, error=row.error
    )
    if row.failed_at is not None and (row.reported_at is None or row.failed_at > row.reported_at):
        out.state = "failing"
    elif row.reported_at is not None and now - row.reported_at > timedelta(
        seconds=3 * interval_seconds
    ):
        out.state = "stale"
    elif row.log_found is False:
        out.state = "no_log"
    return out
