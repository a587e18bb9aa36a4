"""The DNSBL sweep: every replica's loop that claims due subjects and looks them up.

A claim is one short transaction (see ``schedule``) of up to ``dnsbl_batch`` subjects; their
lookups run after it commits, outside any transaction, at most ``dnsbl_concurrency``
questions in flight; the batch's results are then stored in one transaction (results,
history, scores, signals, pauses, delisting). A few batches overlap, so storing one does not
leave the resolvers idle. Lookups that outlast the lease are cut short: unknown, never clean.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.base import utcnow
from control_plane.db.engine import Database
from control_plane.dnsbl import schedule, service
from control_plane.dnsbl.catalog import DnsblList, catalog, lists_of, resolvers
from control_plane.dnsbl.lookup import Lookup, Verdict
from control_plane.dnsbl.service import Outcome
from control_plane.errors import Conflict
from control_plane.health.sweep import default_owner
from control_plane.ips import service as ips
from control_plane.settings import Settings
from control_plane.waiting import woken

log = logging.getLogger(__name__)
PIPELINE = 3  # batches in flight: one stores while the others are looked up


def new_lookup(settings: Settings) -> Lookup:
    return Lookup(
        resolvers(settings),
        timeout=settings.dnsbl_timeout_seconds,
        concurrency=settings.dnsbl_concurrency,
        test_point_ttl=settings.dnsbl_test_point_ttl_seconds,
    )


class Checker:
    """Looks up claimed subjects and stores their results."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        lookup: Lookup | None = None,
        owner: str | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db, self.settings, self.clock = db, settings, clock
        self.lists = catalog(settings)
        self.lookup = lookup or new_lookup(settings)
        self.owner = owner or default_owner()
        self.deadline = settings.dnsbl_lease_seconds * 0.8

    async def aclose(self) -> None:
        await self.lookup.aclose()

    def lists_for(self, kind: str) -> tuple[DnsblList, ...]:
        return lists_of(self.lists, "ip" if kind == "ip" else "domain")

    async def run(self, claims: Sequence[schedule.Claim]) -> list[Outcome]:
        """Look the claimed subjects up, then store the batch (and end its leases)."""
        try:
            outcomes = await self.look_up(claims)
            await self.db.transact(
                lambda session: service.record(
                    session, outcomes, self.lists, self.clock(), self.settings
                )
            )
            return outcomes
        except BaseException:
            with contextlib.suppress(Exception):
                await self.db.transact(lambda s: schedule.release(s, list(claims), self.clock()))
            raise

    async def look_up(self, claims: Sequence[schedule.Claim]) -> list[Outcome]:
        async def one(claim: schedule.Claim) -> Outcome:
            lists = self.lists_for(claim.kind)
            try:
                return Outcome(claim, await self.lookup.check_all(claim.name, lists))
            except Exception as exc:  # a lookup bug must not read as clean
                log.exception("DNSBL lookups of %s failed", claim.name)
                return _unknown(claim, lists, f"the lookup failed: {exc!r}")

        try:
            async with asyncio.timeout(self.deadline):
                return list(await asyncio.gather(*(one(claim) for claim in claims)))
        except TimeoutError:
            detail = f"the lookups did not finish within {self.deadline:g} s"
            return [_unknown(c, self.lists_for(c.kind), detail) for c in claims]

    async def check_ip(self, address: str) -> Outcome:
        """A check asked for (``POST …/reputation/check``): the address on every list now."""

        async def take(session: AsyncSession) -> schedule.Claim | None:
            ip = await ips.get_live(session, address)
            return await schedule.claim_ip(session, ip, self.owner, self.clock(), self.settings)

        claim = await self.db.transact(take)
        if claim is None:
            raise Conflict(f"the DNSBL lookups of {address} are running now; try again shortly")
        (outcome,) = await self.run([claim])
        return outcome


async def check_ip_now(db: Database, settings: Settings, address: str) -> Outcome:
    """A check asked for (the API's and the console's "check now"): its own lookups, so the
    test points are asked again ("now" means now, not the sweep's cache)."""
    checker = Checker(db, settings)
    try:
        return await checker.check_ip(address)
    finally:
        await checker.aclose()


def _unknown(claim: schedule.Claim, lists: Sequence[DnsblList], reason: str) -> Outcome:
    return Outcome(claim, {item.zone: Verdict("unknown", reason=reason) for item in lists})


class Sweep:
    """The loop ``mailfleet serve`` runs: claim a batch of due subjects, look them up, store
    them, with up to ``PIPELINE`` batches in flight; idle, it looks again every
    ``dnsbl_tick_seconds``."""

    def __init__(self, db: Database, settings: Settings, checker: Checker | None = None) -> None:
        self.db, self.settings = db, settings
        self.checker = checker or Checker(db, settings)
        self._running: set[asyncio.Task[list[Outcome]]] = set()
        self._wake = asyncio.Event()

    async def claim(self) -> list[schedule.Claim]:
        owner, clock, batch = self.checker.owner, self.checker.clock, self.settings.dnsbl_batch
        return await self.db.transact(
            lambda session: schedule.claim_due(session, owner, batch, clock(), self.settings)
        )

    def _start(self, claims: list[schedule.Claim]) -> None:
        task = asyncio.create_task(self.checker.run(claims))
        self._running.add(task)

        def finished(done: asyncio.Task[list[Outcome]]) -> None:
            self._running.discard(done)
            if not done.cancelled() and done.exception() is not None:
                log.error("a DNSBL batch failed: %r", done.exception())
            self._wake.set()

        task.add_done_callback(finished)

    async def run_once(self) -> int:
        """Look up every subject due now and wait for them; how many were looked up."""
        count = 0
        while True:
            while len(self._running) < PIPELINE and (claims := await self.claim()):
                count += len(claims)
                self._start(claims)
            if not self._running:
                return count
            await asyncio.wait(set(self._running), return_when=asyncio.FIRST_COMPLETED)

    async def run(self) -> None:
        try:
            while True:
                self._wake.clear()
                claims: list[schedule.Claim] = []
                if len(self._running) < PIPELINE:
                    try:
                        claims = await self.claim()
                    except Exception:
                        log.exception("claiming due DNSBL lookups failed; trying again")
                if claims:
                    self._start(claims)
                    if len(claims) == self.settings.dnsbl_batch:
                        continue  # more may be due
                await woken(self._wake, self.settings.dnsbl_tick_seconds)
        finally:
            for task in list(self._running):
                task.cancel()
            await asyncio.gather(*self._running, return_exceptions=True)
            await self.checker.aclose()
