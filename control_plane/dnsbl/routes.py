"""An address's reputation (per-list DNSBL results, score, history), a check now, and
delisting requests. Another tenant's address is a 404, as is a released one."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Query, status
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.api.context import Ctx
from control_plane.db.base import utcnow
from control_plane.db.lookup import get_by_id
from control_plane.dnsbl import delisting, service
from control_plane.dnsbl.catalog import DnsblList, catalog, find, lists_of
from control_plane.dnsbl.models import DnsblSubject
from control_plane.dnsbl.schemas import (
    DelistIn,
    DelistOut,
    DelistPage,
    DomainReputationOut,
    ReputationOut,
    check_out,
    delist_out,
    result_out,
)
from control_plane.dnsbl.sweep import check_ip_now
from control_plane.incidents.routes import actor_name
from control_plane.ips import service as ips
from control_plane.ips.models import IpAddress
from control_plane.mail.models import MailDomain
from control_plane.settings import Settings

router = APIRouter(prefix="/api/v1", tags=["ips"])
History = Annotated[int, Query(ge=0, le=1000, description="How many past checks to show.")]


async def _reputation_parts(
    session: AsyncSession, subject: DnsblSubject | None, lists: Sequence[DnsblList], history: int
) -> dict[str, Any]:
    rows = await service.results_of(session, subject.id) if subject is not None else {}
    past = await service.history(session, subject.id, history) if subject and history else []
    return {
        "score": subject.score if subject is not None else None,
        "listing": subject.listing if subject is not None else None,
        "checked_at": subject.checked_at if subject is not None else None,
        "next_check_at": subject.next_run_at if subject is not None else None,
        "results": [result_out(item, rows.get(item.zone)) for item in lists],
        "history": [check_out(row) for row in past],
    }


async def reputation(
    session: AsyncSession, ip: IpAddress, settings: Settings, history: int
) -> ReputationOut:
    lists = catalog(settings)
    subject = await service.subject_of_ip(session, ip)
    requests = await delisting.requests_of(session, ip)
    return ReputationOut(
        ip=ip.address,
        delist_requests=[delist_out(r, find(lists, r.zone)) for r in requests],
        **await _reputation_parts(session, subject, lists_of(lists, "ip"), history),
    )


@router.get("/ips/{ip}/reputation")
async def get_reputation(ip: str, ctx: Ctx, history: History = 100) -> ReputationOut:
    """The address on every IP list of the catalog: listed (code, meaning, the list's
    reason), clean or unknown (why), its score, its latest checks and delisting requests."""
    async with ctx.session() as session:
        row = await ips.get_live(session, ip)
        return await reputation(session, row, ctx.settings, history)


@router.post("/ips/{ip}/reputation/check")
async def check_reputation(ip: str, ctx: Ctx, history: History = 100) -> ReputationOut:
    """Look the address up on every list now (test points included) and answer with the
    results. Takes as long as the lookups (at most MAILFLEET_DNSBL_TIMEOUT_SECONDS twice)."""
    async with ctx.session() as session:
        address = (await ips.get_live(session, ip)).address  # the caller may see it
    await check_ip_now(ctx.db, ctx.settings, address)
    async with ctx.session() as session:
        row = await ips.get_live(session, address)
        return await reputation(session, row, ctx.settings, history)


@router.get("/ips/{ip}/delist-requests")
async def list_delist_requests(ip: str, ctx: Ctx) -> DelistPage:
    async with ctx.session() as session:
        row = await ips.get_live(session, ip)
        lists = catalog(ctx.settings)
        found = await delisting.requests_of(session, row)
        return DelistPage(items=[delist_out(r, find(lists, r.zone)) for r in found])


@router.post("/ips/{ip}/delist-requests", status_code=status.HTTP_201_CREATED)
async def open_delist_request(ip: str, body: DelistIn, ctx: Ctx) -> DelistOut:
    """Track a removal request on a list that lists the address now (409 if it does not):
    the answer says where and how to ask; say so with ``…/submitted`` once you have."""
    async with ctx.session() as session:
        row = await ips.get_live(session, ip)
        lists = catalog(ctx.settings)
        request = await delisting.open_request(
            session, row, body.list, lists, actor_name(ctx), utcnow()
        )
        return delist_out(request, find(lists, request.zone))


@router.post("/ips/{ip}/delist-requests/{request_id}/submitted")
async def delist_request_submitted(ip: str, request_id: uuid.UUID, ctx: Ctx) -> DelistOut:
    """You have asked the list: the address is rechecked every
    MAILFLEET_DNSBL_DELIST_RECHECK_SECONDS until the list drops it (cleared) or too long has
    passed (stale)."""
    async with ctx.session() as session:
        row = await ips.get_live(session, ip)
        request = await delisting.get_request(session, row, request_id)
        await delisting.mark_submitted(session, request, utcnow(), ctx.settings)
        return delist_out(request, find(catalog(ctx.settings), request.zone))


@router.get("/domains/{domain_id}/reputation", tags=["domains"])
async def get_domain_reputation(
    domain_id: uuid.UUID, ctx: Ctx, history: History = 100
) -> DomainReputationOut:
    """The mail domain on every domain list of the catalog (Spamhaus DBL, SURBL, URIBL by
    default), its score and latest checks; looked up with the addresses, every interval."""
    async with ctx.session() as session:
        domain = await get_by_id(session, MailDomain, domain_id, "domain")
        subject = await session.scalar(
            select(DnsblSubject).where(DnsblSubject.domain_id == domain.id)
        )
        lists = lists_of(catalog(ctx.settings), "domain")
        return DomainReputationOut(
            domain_id=domain.id,
            domain=domain.name,
            **await _reputation_parts(session, subject, lists, history),
        )
