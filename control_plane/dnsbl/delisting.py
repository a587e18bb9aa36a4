"""Delisting requests: a user asks a list to drop an address and MailFleet follows it.

opened (the address is listed there, the user is told where and how to ask) → submitted
(the user says they asked) → rechecked every ``dnsbl_delist_recheck_seconds`` (the address
is made due for its lookups) → cleared as soon as a lookup finds it no longer listed there
(whether or not it was submitted: listings also expire by themselves), or stale once
``dnsbl_delist_stale_days`` have passed since it was opened. One open request per (address,
list).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.base import utcnow
from control_plane.dnsbl import schedule
from control_plane.dnsbl.catalog import DnsblList, find
from control_plane.dnsbl.lookup import Verdict
from control_plane.dnsbl.models import OPEN_REQUESTS, DelistRequest, DnsblResult, DnsblSubject
from control_plane.errors import Conflict, InvalidInput, NotFound
from control_plane.ips.models import IpAddress
from control_plane.settings import Settings

BATCH = 500


async def open_request(
    session: AsyncSession,
    ip: IpAddress,
    zone: str,
    lists: Sequence[DnsblList],
    actor: str | None,
    now: datetime,
) -> DelistRequest:
    """A tracked request for ``ip`` on the list ``zone`` (it must list the address now)."""
    dnsbl = find(lists, zone)
    if dnsbl is None or dnsbl.kind != "ip":
        raise InvalidInput(f"{zone!r} is not an IP list of the DNSBL catalog", field="body.list")
    result = await session.scalar(
        select(DnsblResult)
        .join(DnsblSubject, DnsblSubject.id == DnsblResult.subject_id)
        .where(DnsblSubject.ip_id == ip.id, DnsblResult.zone == dnsbl.zone)
    )
    if result is None or result.state != "listed":
        seen = f"{result.state} at {result.checked_at:%Y-%m-%d %H:%M} UTC" if result else "not yet"
        raise Conflict(
            f"{ip.address} is not listed on {dnsbl.name} (last check: {seen}); nothing to "
            "delist (POST …/reputation/check to look again)"
        )
    request = DelistRequest(
        tenant_id=ip.tenant_id,
        ip_id=ip.id,
        address=ip.address,
        zone=dnsbl.zone,
        state="opened",
        opened_by=actor,
        opened_at=now,
        detail=f"listed: {result.code} ({result.meaning})"[:2000],
    )
    try:
        async with session.begin_nested():
            session.add(request)
            await session.flush()
    except IntegrityError:
        raise Conflict(
            f"a delisting request for {ip.address} on {dnsbl.name} is already open"
        ) from None
    return request


async def get_request(session: AsyncSession, ip: IpAddress, request_id: uuid.UUID) -> DelistRequest:
    found = await session.scalar(
        select(DelistRequest)
        .where(DelistRequest.id == request_id, DelistRequest.ip_id == ip.id)
        .with_for_update()
    )
    if found is None:
        raise NotFound("delisting request", request_id)
    return found


async def mark_submitted(
    session: AsyncSession, request: DelistRequest, now: datetime, settings: Settings
) -> DelistRequest:
    """The user has asked the list: recheck every ``dnsbl_delist_recheck_seconds``."""
    if request.state == "submitted":
        return request  # said twice: the same
    if request.state != "opened":
        raise Conflict(f"the delisting request is {request.state}; open a new one if needed")
    request.state, request.submitted_at = "submitted", now
    request.next_check_at = now + timedelta(seconds=settings.dnsbl_delist_recheck_seconds)
    return request


async def requests_of(
    session: AsyncSession, ip: IpAddress, limit: int = 100
) -> list[DelistRequest]:
    """The address's requests (this assignment's), newest first."""
    found = await session.scalars(
        select(DelistRequest)
        .where(DelistRequest.ip_id == ip.id)
        .order_by(DelistRequest.opened_at.desc())
        .limit(limit)
    )
    return list(found)


async def absorb(
    session: AsyncSession, verdicts: Mapping[uuid.UUID, Mapping[str, Verdict]], now: datetime
) -> None:
    """Lookups just stored: an open request whose list no longer lists the address clears."""
    if not verdicts:
        return
    found = await session.scalars(
        select(DelistRequest).where(
            DelistRequest.ip_id.in_(list(verdicts)), DelistRequest.state.in_(OPEN_REQUESTS)
        )
    )
    for request in found:
        verdict = verdicts[request.ip_id].get(request.zone)
        if verdict is None or verdict.state == "unknown":
            continue  # could not tell: neither cleared nor still listed
        request.last_checked_at = now
        if verdict.state == "clean":
            request.state, request.closed_at, request.next_check_at = "cleared", now, None
            request.detail = f"no longer listed (checked {now:%Y-%m-%d %H:%M} UTC)"
        else:
            request.detail = f"still listed: {verdict.code} ({verdict.meaning})"[:2000]


def recheck_job(settings: Settings) -> Callable[[AsyncSession], Awaitable[int]]:
    """The periodic job: submitted requests due a recheck make their address due now;
    requests open longer than ``dnsbl_delist_stale_days`` go stale."""
    every = timedelta(seconds=settings.dnsbl_delist_recheck_seconds)
    stale = timedelta(days=settings.dnsbl_delist_stale_days)

    async def run(session: AsyncSession) -> int:
        now = utcnow()
        due = list(
            await session.scalars(
                select(DelistRequest)
                .where(DelistRequest.state == "submitted", DelistRequest.next_check_at <= now)
                .limit(BATCH)
                .with_for_update(skip_locked=True)
            )
        )
        for request in due:
            request.next_check_at = now + every
        await schedule.make_due(session, [r.ip_id for r in due], now)
        old = list(
            await session.scalars(
                select(DelistRequest)
                .where(
                    DelistRequest.state.in_(OPEN_REQUESTS), DelistRequest.opened_at <= now - stale
                )
                .limit(BATCH)
                .with_for_update(skip_locked=True)
            )
        )
        for request in old:
            request.state, request.closed_at, request.next_check_at = "stale", now, None
            request.detail = (
                f"still open {settings.dnsbl_delist_stale_days:g} days after it was opened: "
                "look at the list's answer and ask again"
            )
        return len(due) + len(old)

    return run


async def next_recheck(session: AsyncSession) -> datetime | None:
    """When the next submitted request is due its recheck (the periodic runner wakes)."""
    found: datetime | None = await session.scalar(
        select(func.min(DelistRequest.next_check_at)).where(DelistRequest.state == "submitted")
    )
    return found
