"""Mail counts: what the agents report, and what others read (warmup allowance, routes)."""

from __future__ import annotations

from datetime import date

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.ips.models import IpAddress
from control_plane.mailstats.models import MailCount


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
