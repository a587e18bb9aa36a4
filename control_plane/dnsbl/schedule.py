"""When each address and mail domain is looked up, and which replica does it.

Every live address (an ``ip_addresses`` row not released) and every mail domain is a
subject with a slot in ``dnsbl_interval_seconds``: a stable offset from its id
(``health.schedule.offset_seconds``/``next_slot``), so 10,000 addresses spread over the hour
and a restart keeps the spread. A new subject is due at once. A replica claims due subjects
in a short transaction (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite has one writer),
moves them to their next slot and leases them; the lookups run after commit, and the lease
ends when their results are stored.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.leases import unleased
from control_plane.db.writes import insert_for
from control_plane.dnsbl.models import DnsblSubject
from control_plane.errors import Conflict
from control_plane.health.schedule import next_slot
from control_plane.ips.models import IpAddress
from control_plane.mail.models import MailDomain
from control_plane.settings import Settings

ENSURE_BATCH = 1000


@dataclass(frozen=True)
class Claim:
    """A claimed subject, as its lookups need it (read in the claim, used outside it)."""

    subject_id: uuid.UUID
    tenant_id: uuid.UUID
    server_id: uuid.UUID
    kind: str
    name: str
    ip_id: uuid.UUID | None
    owner: str


async def ensure_subjects(session: AsyncSession, now: datetime) -> int:
    """Give live addresses and mail domains without a subject one, due now; how many."""
    made = 0
    ips = (
        await session.execute(
            select(IpAddress.id, IpAddress.tenant_id, IpAddress.server_id, IpAddress.address)
            .outerjoin(DnsblSubject, DnsblSubject.ip_id == IpAddress.id)
            .where(IpAddress.released_at.is_(None), DnsblSubject.id.is_(None))
            .limit(ENSURE_BATCH)
        )
    ).all()
    rows = [
        {"id": uuid.uuid4(), "tenant_id": tenant, "server_id": server, "kind": "ip",
         "name": address, "ip_id": ip_id, "next_run_at": now}
        for ip_id, tenant, server, address in ips
    ]  # fmt: skip
    domains = (
        await session.execute(
            select(MailDomain.id, MailDomain.tenant_id, MailDomain.server_id, MailDomain.name)
            .outerjoin(DnsblSubject, DnsblSubject.domain_id == MailDomain.id)
            .where(DnsblSubject.id.is_(None))
            .limit(ENSURE_BATCH)
        )
    ).all()
    rows += [
        {"id": uuid.uuid4(), "tenant_id": tenant, "server_id": server, "kind": "domain",
         "name": name, "domain_id": domain_id, "next_run_at": now}
        for domain_id, tenant, server, name in domains
    ]  # fmt: skip
    for kind in ("ip", "domain"):
        part = [row for row in rows if row["kind"] == kind]
        if part:
            statement = insert_for(session, DnsblSubject).values(part).on_conflict_do_nothing()
            await session.execute(statement)
            made += len(part)
    return made


def _watched() -> Any:
    """Domains while they exist (their subject goes with them); addresses while assigned."""
    return or_(DnsblSubject.kind == "domain", IpAddress.released_at.is_(None))


def _take(row: DnsblSubject, owner: str, now: datetime, settings: Settings) -> Claim:
    row.lease_owner = owner
    row.lease_expires_at = now + timedelta(seconds=settings.dnsbl_lease_seconds)
    return Claim(
        subject_id=row.id,
        tenant_id=row.tenant_id,
        server_id=row.server_id,
        kind=row.kind,
        name=row.name,
        ip_id=row.ip_id,
        owner=owner,
    )


async def claim_due(
    session: AsyncSession, owner: str, limit: int, now: datetime, settings: Settings
) -> list[Claim]:
    """Take up to ``limit`` due subjects (oldest due first) that nobody holds."""
    if limit <= 0:
        return []
    await ensure_subjects(session, now)
    found = (
        await session.scalars(
            select(DnsblSubject)
            .outerjoin(IpAddress, IpAddress.id == DnsblSubject.ip_id)
            .where(DnsblSubject.next_run_at <= now, unleased(DnsblSubject, now), _watched())
            .order_by(DnsblSubject.next_run_at)
            .limit(limit)
            .with_for_update(skip_locked=True, of=DnsblSubject)
        )
    ).all()
    interval = settings.dnsbl_interval_seconds
    claims = []
    for row in found:
        row.next_run_at = next_slot(row.id, now, interval)
        claims.append(_take(row, owner, now, settings))
    return claims


async def claim_ip(
    session: AsyncSession, ip: IpAddress, owner: str, now: datetime, settings: Settings
) -> Claim | None:
    """Take the address now, due or not (a check asked for); None while a run holds it,
    409 when it was looked up less than ``dnsbl_check_min_seconds`` ago."""
    await ensure_subjects(session, now)
    row = await session.scalar(
        select(DnsblSubject).where(DnsblSubject.ip_id == ip.id).with_for_update()
    )
    if row is None or (row.lease_expires_at is not None and row.lease_expires_at >= now):
        return None
    wait = settings.dnsbl_check_min_seconds
    if row.checked_at is not None and now < row.checked_at + timedelta(seconds=wait):
        raise Conflict(
            f"{ip.address} was looked up at {row.checked_at:%H:%M:%S} UTC; it can be checked "
            f"again {wait:g} s after that (MAILFLEET_DNSBL_CHECK_MIN_SECONDS)"
        )
    row.next_run_at = next_slot(row.id, now, settings.dnsbl_interval_seconds)
    return _take(row, owner, now, settings)


async def release(session: AsyncSession, claims: list[Claim], now: datetime) -> None:
    """Their results are stored (or given up): claimable again when due."""
    for owner in {claim.owner for claim in claims}:
        ids = [claim.subject_id for claim in claims if claim.owner == owner]
        await session.execute(
            update(DnsblSubject)
            .where(DnsblSubject.id.in_(ids), DnsblSubject.lease_owner == owner)
            .values(lease_owner=None, lease_expires_at=None)
            .execution_options(synchronize_session=False)
        )


async def make_due(session: AsyncSession, ip_ids: list[uuid.UUID], at: datetime) -> None:
    """Look these addresses up by ``at`` (never later than they already are)."""
    if ip_ids:
        await session.execute(
            update(DnsblSubject)
            .where(DnsblSubject.ip_id.in_(ip_ids), DnsblSubject.next_run_at > at)
            .values(next_run_at=at)
            .execution_options(synchronize_session=False)
        )
