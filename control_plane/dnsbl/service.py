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

from sqlalchemy import delete, insert, select, update
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


@dataclass(frozen=True)
class Change:
    """A (subject, list) result that is new or differs from the stored one."""

    outcome: Outcome
    zone: str
    before: str | None  # the stored state (None: first result)


async def record(
    session: AsyncSession,
    outcomes: Sequence[Outcome],
    lists: Sequence[DnsblList],
    now: datetime,
    settings: Settings,
) -> None:
    """Store a batch of lookups (in the caller's transaction) and end their leases.

    Set-based: a batch of 250 subjects × 8 lists is a few statements (new results inserted
    together, changed ones updated by key, unchanged ones only stamped), not 2,000 ORM rows.
    """
    if not outcomes:
        return
    by_zone = {item.zone: item for item in lists}
    ids = [o.claim.subject_id for o in outcomes]
    subjects = {
        subject_id: tenant_id
        for subject_id, tenant_id in await session.execute(
            select(DnsblSubject.id, DnsblSubject.tenant_id).where(DnsblSubject.id.in_(ids))
        )
    }
    stored = {
        (subject_id, zone): (result_id, (state, code, reason))
        for result_id, subject_id, zone, state, code, reason in await session.execute(
            select(DnsblResult.id, DnsblResult.subject_id, DnsblResult.zone, DnsblResult.state,
                   DnsblResult.code, DnsblResult.reason)
            .where(DnsblResult.subject_id.in_(ids))
        )
    }  # fmt: skip
    live = {
        ip_id: (listing, score_)
        for ip_id, listing, score_ in await session.execute(
            select(IpAddress.id, IpAddress.listing, IpAddress.score).where(
                IpAddress.id.in_([o.claim.ip_id for o in outcomes if o.claim.ip_id]),
                IpAddress.released_at.is_(None),
            )
        )
    }
    new: list[dict[str, object]] = []
    updated: list[dict[str, object]] = []
    unchanged: list[uuid.UUID] = []
    changes: list[Change] = []
    verdicts: list[dict[str, object]] = []
    history: list[dict[str, object]] = []
    relisted: dict[uuid.UUID, tuple[str, int | None]] = {}
    stamped: list[uuid.UUID] = []
    for outcome in outcomes:
        claim = outcome.claim
        tenant_id = subjects.get(claim.subject_id)
        if tenant_id is None or not outcome.verdicts:
            continue  # its address or domain went meanwhile; or no list of its kind
        for zone, verdict in outcome.verdicts.items():
            values = {"state": verdict.state, "code": verdict.code, "meaning": verdict.meaning,
                      "reason": verdict.reason, "checked_at": now}  # fmt: skip
            found = stored.get((claim.subject_id, zone))
            if found is None:
                key = {"id": uuid.uuid4(), "subject_id": claim.subject_id, "zone": zone}
                new.append({**key, "tenant_id": tenant_id, "changed_at": now, **values})
                changes.append(Change(outcome, zone, None))
            elif found[1] == (verdict.state, verdict.code, verdict.reason):
                unchanged.append(found[0])
            else:
                moved = {"changed_at": now} if found[1][0] != verdict.state else {}
                updated.append({"id": found[0], **values, **moved})
                changes.append(Change(outcome, zone, found[1][0]))
        listing = listing_of(outcome.verdicts)
        points = score(outcome.verdicts, [item for item in lists if item.kind == claim.kind])
        verdicts.append({"id": claim.subject_id, "listing": listing, "score": points,
                         "checked_at": now})  # fmt: skip
        history.append(_history(claim, tenant_id, listing, points, outcome.verdicts, now))
        if claim.ip_id in live:
            if live[claim.ip_id] != (listing, points):
                relisted[claim.ip_id] = (listing, points)
            else:
                stamped.append(claim.ip_id)  # the same verdict: only when it was checked moves
    if new:
        await session.execute(insert(DnsblResult), new)
    if updated:
        await session.execute(update(DnsblResult), updated)
    if verdicts:
        await session.execute(update(DnsblSubject), verdicts)
    for table, column, rows in (
        (DnsblResult, DnsblResult.checked_at, unchanged),
        (IpAddress, IpAddress.listing_checked_at, stamped),
    ):
        if rows:
            await session.execute(
                update(table)
                .where(table.id.in_(rows))
                .values({column.key: now})
                .execution_options(synchronize_session=False)
            )
    if history:
        await session.execute(insert(DnsblCheck), history)
    pauses = _pauses(changes, by_zone) if settings.auto_pauses_on("listing") else {}
    addresses = await _addresses(session, [*relisted, *pauses])
    for ip_id, (verdict_, points) in relisted.items():
        await ips.set_listing(session, addresses[ip_id], verdict_, points, now)
    for ip_id, reason in pauses.items():
        if ip_id in addresses:
            await ips.pause(session, addresses[ip_id], reason, "auto", now)
    await _signals(session, outcomes, by_zone, now)
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


def _history(
    claim: schedule.Claim,
    tenant_id: uuid.UUID,
    listing: str,
    points: int | None,
    verdicts: Mapping[str, Verdict],
    now: datetime,
) -> dict[str, object]:
    return {
        "id": uuid.uuid4(),
        "tenant_id": tenant_id,
        "subject_id": claim.subject_id,
        "checked_at": now,
        "listing": listing,
        "score": points,
        "listed": json.dumps(sorted(z for z, v in verdicts.items() if v.state == "listed")),
        "unknown": json.dumps(sorted(z for z, v in verdicts.items() if v.state == "unknown")),
    }


def _pauses(changes: Sequence[Change], by_zone: Mapping[str, DnsblList]) -> dict[uuid.UUID, str]:
    """Addresses newly listed on a major list, and why: they stop sending (once, on the
    change: a user who resumes one while it is still listed is not overruled every hour;
    never resumed by itself — the user decides when it is safe)."""
    found: dict[uuid.UUID, str] = {}
    for change in changes:
        dnsbl = by_zone.get(change.zone)
        ip_id = change.outcome.claim.ip_id
        if ip_id is None or dnsbl is None or not dnsbl.major or ip_id in found:
            continue
        if change.outcome.verdicts[change.zone].state == "listed" and change.before != "listed":
            found[ip_id] = f"listed on {dnsbl.name}"
    return found


def _signal(
    claim: schedule.Claim, dnsbl: DnsblList, verdict: Verdict, server: Server | None
) -> Signal:
    """A listing fails its check (critical on a major list); clean resolves it."""
    if verdict.state == "listed":
        state, severity = "failing", "critical" if dnsbl.major else "warning"
        detail = f"listed on {dnsbl.name} ({verdict.code}: {verdict.meaning})"
        detail += f": {verdict.reason}" if verdict.reason else ""
    else:
        state, severity, detail = "ok", "info", f"not listed on {dnsbl.name}"
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
    by_zone: Mapping[str, DnsblList],
    now: datetime,
) -> None:
    """Every listed result (it opens its incident or keeps it open), and every clean one
    whose incident is still open (it resolves it; a resolve lost once is sent again). An
    unknown result is not sent: it says nothing either way (the API shows it, with why)."""
    wanted: list[tuple[schedule.Claim, str, Verdict]] = []
    names = {o.claim.name for o in outcomes}
    open_rows = await session.execute(
        select(Incident.subject_kind, Incident.subject_id, Incident.check).where(
            Incident.subject_kind.in_(("ip", "domain")),
            Incident.subject_id.in_(names),
            Incident.check.like("dnsbl.%"),
            Incident.state.in_(OPEN_STATES),
        )
    )
    still_open = {(kind, name, check) for kind, name, check in open_rows}
    for outcome in outcomes:
        kind = "ip" if outcome.claim.kind == "ip" else "domain"
        for zone, verdict in outcome.verdicts.items():
            if zone not in by_zone:
                continue
            if verdict.state == "listed" or (
                verdict.state == "clean"
                and (kind, outcome.claim.name, f"dnsbl.{zone}") in still_open
            ):
                wanted.append((outcome.claim, zone, verdict))
    if not wanted:
        return
    servers = await _servers(session, {claim.server_id for claim, _, _ in wanted})
    signals = [
        _signal(claim, by_zone[zone], verdict, servers.get(claim.server_id))
        for claim, zone, verdict in wanted
    ]
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
