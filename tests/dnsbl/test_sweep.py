"""The DNSBL sweep on both databases: claims with leases (two sweepers never take the same
subject; released addresses are not looked up), results stored per list with history and
score, the address's listing, an incident for a major listing and the automatic pause
(once: a resumed address is not paused again while it stays listed), domains, delisting
progress and the history's retention."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select, update

from control_plane.db.base import utcnow
from control_plane.db.engine import Database
from control_plane.dnsbl import delisting, schedule, service
from control_plane.dnsbl.catalog import catalog
from control_plane.dnsbl.lookup import Verdict
from control_plane.dnsbl.models import DelistRequest, DnsblCheck, DnsblResult, DnsblSubject
from control_plane.dnsbl.sweep import Checker, Sweep
from control_plane.errors import Conflict, InvalidInput
from control_plane.incidents.models import Incident
from control_plane.ips import service as ips
from control_plane.ips.models import IpAddress, IpEvent
from control_plane.mail.models import MailDomain
from control_plane.settings import Settings
from tests.dnsbl.conftest import (
    BAD_DOMAIN,
    CLEAN,
    DOMAIN_ZONE,
    LISTED,
    MAJOR_ZONE,
    MINOR,
    MINOR_ZONE,
    PAST,
    REFUSED_ZONE,
    a_server_with,
    check_due,
    make_due,
)
from tests.support.dnsbl import addresses, silent_resolver


def clock() -> Callable[[], datetime]:
    return lambda: PAST


async def test_two_sweepers_never_take_the_same_subject(
    db: Database, dnsbl_settings: Settings
) -> None:
    _, live = await a_server_with(db, addresses(30))
    ids = [ip.id for ip in live]
    await make_due(db, ids)

    async def claim(owner: str) -> list[schedule.Claim]:
        async with db.session() as session:
            taken = await schedule.claim_due(session, owner, 20, PAST, dnsbl_settings)
            await asyncio.sleep(0.2)  # hold the rows while the other sweeper looks
            return taken

    first, second = await asyncio.gather(claim("a"), claim("b"))
    a, b = {c.ip_id for c in first}, {c.ip_id for c in second}
    assert a.isdisjoint(b) and a | b == set(ids) and {len(a), len(b)} == {20, 10}
    async with db.session() as session:  # leased and moved to their next slot
        assert await schedule.claim_due(session, "c", 100, PAST, dnsbl_settings) == []
        rows = (
            await session.scalars(select(DnsblSubject).where(DnsblSubject.ip_id.in_(ids)))
        ).all()
        assert {r.lease_owner for r in rows} == {"a", "b"}
        assert all(r.next_run_at > PAST for r in rows)
        # Released meanwhile: its subject is no longer claimed, even when due.
        gone = await session.get(IpAddress, ids[0])
        assert gone is not None
        gone.released_at = utcnow()
        await schedule.release(session, [*first, *second], PAST)
    later = PAST + timedelta(seconds=dnsbl_settings.dnsbl_interval_seconds + 1)
    async with db.session() as session:
        again = await schedule.claim_due(session, "d", 100, later, dnsbl_settings)
        await schedule.release(session, again, later)
    assert {c.ip_id for c in again} == set(ids[1:])


async def test_sweep_stores_scores_signals_and_pauses(
    db: Database, dnsbl_settings: Settings
) -> None:
    server, live = await a_server_with(db, [LISTED, CLEAN, MINOR])
    by_address = {ip.address: ip for ip in live}
    async with db.session() as session:  # a mail domain of the server, listed on the DBL
        domain = MailDomain(tenant_id=server.tenant_id, server_id=server.id, name=BAD_DOMAIN)
        session.add(domain)
    await make_due(db, [ip.id for ip in live], [domain.id])
    checker = Checker(db, dnsbl_settings, clock=clock())
    sweep = Sweep(db, dnsbl_settings, checker)
    try:
        assert await sweep.run_once() == 4
    finally:
        await checker.aclose()

    async with db.session() as session:
        listed = await session.get(IpAddress, by_address[LISTED].id)
        clean = await session.get(IpAddress, by_address[CLEAN].id)
        minor = await session.get(IpAddress, by_address[MINOR].id)
        assert listed is not None and clean is not None and minor is not None
        # 30 + 10 listed of the 40 that answered (the refusing and broken lists left out).
        assert (listed.listing, listed.score) == ("listed", 0)
        assert (clean.listing, clean.score) == ("unknown", 100)  # two lists could not tell
        assert (minor.listing, minor.score) == ("listed", 75)
        assert listed.paused_at is not None and listed.paused_by == "auto"
        assert listed.paused_reason == "listed on Major BL"
        assert minor.paused_at is None  # a minor list does not pause
        subject = await service.subject_of_ip(session, listed)
        assert subject is not None and subject.lease_owner is None
        results = await service.results_of(session, subject.id)
        assert results[MAJOR_ZONE].state == "listed" and results[MAJOR_ZONE].code == "127.0.0.4"
        assert results[REFUSED_ZONE].state == "unknown"
        (check,) = await service.history(session, subject.id, 10)
        assert json.loads(check.listed) == [MAJOR_ZONE, MINOR_ZONE] and check.score == 0
        incidents = {
            (i.subject_kind, i.subject_id, i.check): i
            for i in await session.scalars(
                select(Incident).where(Incident.tenant_id == server.tenant_id)
            )
        }
        major = incidents[("ip", LISTED, f"dnsbl.{MAJOR_ZONE}")]
        assert major.severity == "critical" and major.server_id == server.id
        assert incidents[("ip", MINOR, f"dnsbl.{MINOR_ZONE}")].severity == "warning"
        assert ("ip", CLEAN, f"dnsbl.{REFUSED_ZONE}") not in incidents  # unknown: no incident
        assert incidents[("domain", BAD_DOMAIN, f"dnsbl.{DOMAIN_ZONE}")].severity == "critical"
        domain_subject = await session.scalar(
            select(DnsblSubject).where(DnsblSubject.domain_id == domain.id)
        )
        assert domain_subject is not None and domain_subject.listing == "listed"
        await ips.resume(session, listed, "tests", PAST)

    # Still listed at the next check: the resumed address is not paused again.
    await make_due(db, [by_address[LISTED].id])
    assert await check_due(db, dnsbl_settings, PAST + timedelta(seconds=5)) == [LISTED]
    async with db.session() as session:
        listed = await session.get(IpAddress, by_address[LISTED].id)
        assert listed is not None and listed.paused_at is None
        pauses = await session.scalars(
            select(IpEvent).where(IpEvent.ip_id == listed.id, IpEvent.kind == "paused")
        )
        assert len(pauses.all()) == 1


async def test_delisting_requests_follow_the_lookups(
    db: Database, dnsbl_settings: Settings
) -> None:
    _, (ip,) = await a_server_with(db, [LISTED])
    lists = catalog(dnsbl_settings)
    await make_due(db, [ip.id])
    checker = Checker(db, dnsbl_settings, clock=clock())
    try:
        await Sweep(db, dnsbl_settings, checker).run_once()
    finally:
        await checker.aclose()
    now = utcnow()
    async with db.session() as session:
        row = await ips.get_live(session, LISTED)
        refused = (("nope.test", InvalidInput), (REFUSED_ZONE, Conflict))
        for zone, error in refused:  # not in the catalog; not listing the address
            with pytest.raises(error):
                async with session.begin_nested():
                    await delisting.open_request(session, row, zone, lists, "tests", now)
        request = await delisting.open_request(session, row, MAJOR_ZONE, lists, "tests", now)
        minor = await delisting.open_request(session, row, MINOR_ZONE, lists, "tests", now)
        with pytest.raises(Conflict):  # one open request per (address, list)
            async with session.begin_nested():
                await delisting.open_request(session, row, MAJOR_ZONE, lists, "tests", now)
        await delisting.mark_submitted(session, request, now, dnsbl_settings)
        assert request.next_check_at == now + timedelta(seconds=1)
        request.next_check_at = now - timedelta(seconds=1)  # its recheck is due
        request_id, minor_id = request.id, minor.id

    # The recheck job makes the address due; the list dropped it meanwhile: cleared.
    async with db.session() as session:
        assert await delisting.recheck_job(dnsbl_settings)(session) >= 1
        subject = await session.scalar(select(DnsblSubject).where(DnsblSubject.ip_id == ip.id))
        assert subject is not None and subject.next_run_at <= utcnow()
        await session.execute(
            update(DnsblSubject)
            .where(DnsblSubject.id == subject.id)
            .values(next_run_at=PAST - timedelta(seconds=1))
        )
    async with db.session() as session:
        claims = await schedule.claim_due(session, "t", 10, PAST, dnsbl_settings)
    outcome = service.Outcome(claims[0], {MAJOR_ZONE: Verdict("clean")})
    async with db.session() as session:
        await service.record(session, [outcome], lists, now, dnsbl_settings)
    stale_after = dnsbl_settings.model_copy(update={"dnsbl_delist_stale_days": 0.0})
    async with db.session() as session:
        await delisting.recheck_job(stale_after)(session)
        cleared = await session.get(DelistRequest, request_id)
        stale = await session.get(DelistRequest, minor_id)
        assert cleared is not None and cleared.state == "cleared" and cleared.closed_at == now
        assert stale is not None and stale.state == "stale"
        incident = await session.scalar(  # the listing's incident resolved with it
            select(Incident).where(
                Incident.tenant_id == ip.tenant_id,
                Incident.subject_id == LISTED,
                Incident.check == f"dnsbl.{MAJOR_ZONE}",
            )
        )
        assert incident is not None and incident.state == "resolved"
        result = await session.scalar(
            select(DnsblResult).where(
                DnsblResult.subject_id == subject.id, DnsblResult.zone == MAJOR_ZONE
            )
        )
        assert result is not None and result.state == "clean"


async def test_history_older_than_its_retention_goes(
    db: Database, dnsbl_settings: Settings
) -> None:
    _, (ip,) = await a_server_with(db, addresses(1))
    await make_due(db, [ip.id])
    async with db.session() as session:
        subject = await session.scalar(select(DnsblSubject).where(DnsblSubject.ip_id == ip.id))
        assert subject is not None
        now = utcnow()
        for days in (100, 91, 1):
            session.add(
                DnsblCheck(tenant_id=subject.tenant_id, subject_id=subject.id,
                           checked_at=now - timedelta(days=days), listing="clean", score=100,
                           listed="[]", unknown="[]")
            )  # fmt: skip
    async with db.session() as session:
        assert await service.cleanup_job(dnsbl_settings)(session) >= 2
        left = await session.scalars(select(DnsblCheck).where(DnsblCheck.subject_id == subject.id))
        assert [(now - c.checked_at).days for c in left] == [1]


async def test_the_loop_looks_up_what_falls_due(db: Database, dnsbl_settings: Settings) -> None:
    """``Sweep.run`` (what serve runs): due subjects are looked up without being asked."""
    _, (ip,) = await a_server_with(db, [MINOR])
    await make_due(db, [ip.id])
    sweep = Sweep(db, dnsbl_settings, Checker(db, dnsbl_settings, clock=clock()))
    task = asyncio.create_task(sweep.run())
    try:
        for _ in range(100):
            async with db.session() as session:
                row = await session.get(IpAddress, ip.id)
                assert row is not None
                if row.listing is not None:
                    break
            await asyncio.sleep(0.05)
        assert row is not None and (row.listing, row.score) == ("listed", 75)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_lookups_past_the_lease_are_unknown(db: Database, dnsbl_settings: Settings) -> None:
    """A run cut short (resolvers silent past its deadline) stores unknown, never clean."""
    _, (ip,) = await a_server_with(db, addresses(1))
    await make_due(db, [ip.id])
    with silent_resolver() as silent:
        config = dnsbl_settings.model_copy(
            update={"dnsbl_resolvers": f"{silent[0]}:{silent[1]}", "dnsbl_timeout_seconds": 5.0}
        )
        checker = Checker(db, config, clock=clock())
        checker.deadline = 0.3  # well before the lookups' own timeout
        try:
            assert await Sweep(db, config, checker).run_once() == 1
        finally:
            await checker.aclose()
    async with db.session() as session:
        row = await session.get(IpAddress, ip.id)
        assert row is not None and (row.listing, row.score) == ("unknown", None)
        subject = await service.subject_of_ip(session, row)
        assert subject is not None and subject.lease_owner is None
        results = await service.results_of(session, subject.id)
        assert {r.state for r in results.values()} == {"unknown"}
        assert all("did not finish within 0.3 s" in (r.reason or "") for r in results.values())
