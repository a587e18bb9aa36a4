"""Storing DNSBL verdicts: latest result per (subject, list), each check's outcome, the
score, the address's listing, incident signals, the automatic pause, delisting progress.

Score (0-100, per address and per domain, over the catalog's lists of its kind)::

    score = round(100 × (1 − Σ weight of lists listing it / Σ weight of lists that answered))

A list that answered is one that said listed or clean; an unknown list is left out of both
sums (it says nothing either way), so the score never rises or falls on a list that could
not be asked. No list answered (or all weights are 0): the score is unknown (null). The
verdict (``listing``) is ``listed`` if any list lists it, else ``unknown`` if any list could
not tell, else ``clean``.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.base import utcnow
from control_plane.dnsbl import delisting, schedule
from control_plane.dnsbl.catalog import DnsblList
from control_plane.dnsbl.lookup import Verdict
from control_plane.dnsbl.models import DnsblCheck, DnsblResult, DnsblSubject
from control_plane.incidents import service as incidents
from control_plane.incidents.models import OPEN_STATES, Incident
from control_plane.incidents.signals import Signal
from control_plane.ips import service as ips
from control_plane.ips.models import IpAddress
from control_plane.servers.models import Server
from control_plane.settings import Settings

log = logging.getLogger(__name__)
Listing = Literal["listed", "clean", "unknown"]
CLEANUP_BATCH = 5000


def score(verdicts: Mapping[str, Verdict], lists: Sequence[DnsblList]) -> int | None:
    """The 0-100 score (see the module's docstring); None when no list answered."""
    weights = {item.zone: item.weight for item in lists}
    answered = [z for z, v in verdicts.items() if v.state != "unknown" and z in weights]
    total = sum(weights[z] for z in answered)
    if total <= 0:
        return None
    listed = sum(weights[z] for z in answered if verdicts[z].state == "listed")
    return round(100 * (1 - listed / total))


def listing_of(verdicts: Mapping[str, Verdict]) -> Listing:
    states = {verdict.state for verdict in verdicts.values()}
    if "listed" in states:
        return "listed"
    return "unknown" if "unknown" in states or not states else "clean"


@dataclass(frozen=True)
class Outcome:
    """One claimed subject's verdicts, by zone."""

    claim: schedule.Claim
    verdicts: Mapping[str, Verdict]


async def record(
    session: AsyncSession,
    outcomes: Sequence[Outcome],
    lists: Sequence[DnsblList],
    now: datetime,
    settings: Settings,
) -> None:
    """Store a batch of lookups (in the caller's transaction) and end their leases."""
    if not outcomes:
        return
    by_zone = {item.zone: item for item in lists}
    ids = [o.claim.subject_id for o in outcomes]
    subjects = {
        row.id: row
        for row in (await session.scalars(select(DnsblSubject).where(DnsblSubject.id.in_(ids))))
    }
    stored: dict[tuple[uuid.UUID, str], DnsblResult] = {
        (row.subject_id, row.zone): row
        for row in await session.scalars(select(DnsblResult).where(DnsblResult.subject_id.in_(ids)))
    }
    addresses = await _addresses(session, [o.claim.ip_id for o in outcomes if o.claim.ip_id])
    unchanged: list[uuid.UUID] = []
    changed: list[tuple[Outcome, str, DnsblResult, str | None]] = []
    for outcome in outcomes:
        subject = subjects.get(outcome.claim.subject_id)
        if subject is None or not outcome.verdicts:
            continue  # its address or domain went meanwhile; or no list of its kind
        for zone, verdict in outcome.verdicts.items():
            row = stored.get((subject.id, zone))
            before = row.state if row is not None else None
            if row is None:
                row = DnsblResult(
                    tenant_id=subject.tenant_id, subject_id=subject.id, zone=zone,
                    state=verdict.state, checked_at=now, changed_at=now,
                )  # fmt: skip
                session.add(row)
            elif (row.state, row.code, row.reason) == (verdict.state, verdict.code, verdict.reason):
                unchanged.append(row.id)
                continue
            if before != verdict.state:
                row.changed_at = now
            row.state, row.code, row.checked_at = verdict.state, verdict.code, now
            row.meaning, row.reason = verdict.meaning, verdict.reason
            changed.append((outcome, zone, row, before))
        kind_lists = [item for item in lists if item.kind == subject.kind]
        subject.listing = listing_of(outcome.verdicts)
        subject.score = score(outcome.verdicts, kind_lists)
        subject.checked_at = now
        session.add(_history(subject, outcome.verdicts, now))
        ip = addresses.get(subject.ip_id) if subject.ip_id else None
        if ip is not None:
            await ips.set_listing(session, ip, subject.listing, subject.score, now)
    if unchanged:
        await session.execute(
            update(DnsblResult)
            .where(DnsblResult.id.in_(unchanged))
            .values(checked_at=now)
            .execution_options(synchronize_session=False)
        )
    await _auto_pause(session, changed, addresses, by_zone, now, settings)
    await _signals(session, outcomes, changed, by_zone, now)
    await delisting.absorb(session, outcomes_by_ip(outcomes), now)
    await schedule.release(session, [o.claim for o in outcomes], now)


def outcomes_by_ip(outcomes: Sequence[Outcome]) -> dict[uuid.UUID, Mapping[str, Verdict]]:
    return {o.claim.ip_id: o.verdicts for o in outcomes if o.claim.ip_id is not None}


async def _addresses(session: AsyncSession, ids: list[uuid.UUID]) -> dict[uuid.UUID, IpAddress]:
    if not ids:
        return {}
    found = await session.scalars(
        select(IpAddress).where(IpAddress.id.in_(ids), IpAddress.released_at.is_(None))
    )
    return {ip.id: ip for ip in found}


def _history(subject: DnsblSubject, verdicts: Mapping[str, Verdict], now: datetime) -> DnsblCheck:
    return DnsblCheck(
        tenant_id=subject.tenant_id,
        subject_id=subject.id,
        checked_at=now,
        listing=subject.listing,
        score=subject.score,
        listed=json.dumps(sorted(z for z, v in verdicts.items() if v.state == "listed")),
        unknown=json.dumps(sorted(z for z, v in verdicts.items() if v.state == "unknown")),
    )


async def _auto_pause(
    session: AsyncSession,
    changed: list[tuple[Outcome, str, DnsblResult, str | None]],
    addresses: Mapping[uuid.UUID, IpAddress],
    by_zone: Mapping[str, DnsblList],
    now: datetime,
    settings: Settings,
) -> None:
    """An address newly listed on a major list stops sending (once, on the change: a user
    who resumes it while it is still listed is not overruled every hour; never resumed by
    itself — the user decides when it is safe)."""
    if not settings.auto_pauses_on("listing"):
        return
    for outcome, zone, row, before in changed:
        dnsbl = by_zone.get(zone)
        ip = addresses.get(outcome.claim.ip_id) if outcome.claim.ip_id else None
        if ip is None or dnsbl is None or not dnsbl.major:
            continue
        if row.state == "listed" and before != "listed":
            await ips.pause(session, ip, f"listed on {dnsbl.name}", "auto", now)


def _signal(
    claim: schedule.Claim, dnsbl: DnsblList, verdict: Verdict, server: Server | None
) -> Signal:
    state = {"listed": "failing", "clean": "ok"}.get(verdict.state, "unknown")
    severity = "critical" if dnsbl.major else "warning"
    if verdict.state == "listed":
        detail = f"listed on {dnsbl.name} ({verdict.code}: {verdict.meaning})"
        if verdict.reason:
            detail += f": {verdict.reason}"
    elif verdict.state == "clean":
        detail, severity = f"not listed on {dnsbl.name}", "info"
    else:
        detail, severity = f"{dnsbl.name} could not tell: {verdict.reason}", "warning"
    return Signal(
        tenant_id=claim.tenant_id,
        subject_kind="ip" if claim.kind == "ip" else "domain",
        subject_id=claim.name,
        check=dnsbl.check,
        state=state,  # type: ignore[arg-type]
        severity=severity,  # type: ignore[arg-type]
        summary=f"{claim.name}: {detail}"[:1000],
        server_id=claim.server_id,
        workspace_id=server.workspace_id if server is not None else None,
    )


async def _signals(
    session: AsyncSession,
    outcomes: Sequence[Outcome],
    changed: list[tuple[Outcome, str, DnsblResult, str | None]],
    by_zone: Mapping[str, DnsblList],
    now: datetime,
) -> None:
    """Every change, every still-listed result (it keeps its incident open), and every
    clean one whose incident is still open (a resolve lost once is sent again)."""
    wanted: dict[tuple[uuid.UUID, str], tuple[schedule.Claim, Verdict]] = {}
    for outcome, zone, _row, _before in changed:
        wanted[(outcome.claim.subject_id, zone)] = (outcome.claim, outcome.verdicts[zone])
    for outcome in outcomes:
        for zone, verdict in outcome.verdicts.items():
            if verdict.state == "listed":
                wanted[(outcome.claim.subject_id, zone)] = (outcome.claim, verdict)
    names = {o.claim.name for o in outcomes}
    open_rows = await session.execute(
        select(Incident.subject_kind, Incident.subject_id, Incident.check).where(
            Incident.subject_kind.in_(("ip", "domain")),
            Incident.subject_id.in_(names),
            Incident.check.like("dnsbl.%"),
            Incident.state.in_(OPEN_STATES),
        )
    )
    still_open = set(open_rows.tuples().all())
    for outcome in outcomes:
        kind = "ip" if outcome.claim.kind == "ip" else "domain"
        for zone, verdict in outcome.verdicts.items():
            if verdict.state == "clean" and (kind, outcome.claim.name, f"dnsbl.{zone}") in (
                still_open
            ):
                wanted[(outcome.claim.subject_id, zone)] = (outcome.claim, verdict)
    servers = await _servers(session, {claim.server_id for claim, _ in wanted.values()})
    signals = [
        _signal(claim, by_zone[zone], verdict, servers.get(claim.server_id))
        for (_, zone), (claim, verdict) in wanted.items()
        if zone in by_zone
    ]
    if not signals:
        return
    try:  # the results stay stored even if the incidents cannot take them now
        async with session.begin_nested():
            await incidents.observe(session, signals, now)
    except Exception:
        log.exception("incidents could not take %d DNSBL signals", len(signals))


async def _servers(session: AsyncSession, ids: set[uuid.UUID]) -> dict[uuid.UUID, Server]:
    if not ids:
        return {}
    return {s.id: s for s in await session.scalars(select(Server).where(Server.id.in_(ids)))}


async def results_of(session: AsyncSession, subject_id: uuid.UUID) -> dict[str, DnsblResult]:
    found = await session.scalars(select(DnsblResult).where(DnsblResult.subject_id == subject_id))
    return {row.zone: row for row in found}


async def subject_of_ip(session: AsyncSession, ip: IpAddress) -> DnsblSubject | None:
    found: DnsblSubject | None = await session.scalar(
        select(DnsblSubject).where(DnsblSubject.ip_id == ip.id)
    )
    return found


async def history(session: AsyncSession, subject_id: uuid.UUID, limit: int) -> list[DnsblCheck]:
    """The subject's latest checks, newest first."""
    found = await session.scalars(
        select(DnsblCheck)
        .where(DnsblCheck.subject_id == subject_id)
        .order_by(DnsblCheck.checked_at.desc(), DnsblCheck.id)
        .limit(limit)
    )
    return list(found)


def cleanup_job(settings: Settings) -> Callable[[AsyncSession], Awaitable[int]]:
    """The periodic job that drops check history older than ``dnsbl_history_days`` (a
    batch a round, so no round holds a long transaction)."""

    async def run(session: AsyncSession) -> int:
        cutoff = utcnow() - timedelta(days=settings.dnsbl_history_days)
        old = (
            select(DnsblCheck.id)
            .where(DnsblCheck.checked_at < cutoff)
            .limit(CLEANUP_BATCH)
            .scalar_subquery()
        )
        result = await session.execute(
            delete(DnsblCheck)
            .where(DnsblCheck.id.in_(old))
            .execution_options(synchronize_session=False)
        )
        return int(getattr(result, "rowcount", 0) or 0)

    return run
