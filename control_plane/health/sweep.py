"""The health sweep: every replica's loop that claims due servers and checks them.

A claim is one short transaction (see ``schedule``); the probes (mail ports, DNS) run after
it commits, outside any transaction, at most ``health_concurrency`` servers at a time; each
server's results are then stored in a transaction of its own, together with the checks read
from the database (agent link, backups, TLS renewals, resources) and the agent commands whose
results arrive later (``mailu.status``, the outbound probe). A run that outlasts its lease is
cut short: its probes are ``unknown``, never ok.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.commands import handlers
from control_plane.db.base import utcnow
from control_plane.db.engine import Database
from control_plane.errors import Conflict, NotFound
from control_plane.health import checks, hooks, outbound, probes, resources, schedule, service
from control_plane.health.models import HealthSchedule
from control_plane.health.results import Result
from control_plane.mail import stack
from control_plane.servers.models import Server
from control_plane.settings import Settings
from control_plane.waiting import woken

log = logging.getLogger(__name__)
PORT_CHECKS = ("smtp.25", "smtp.465", "smtp.587", "imap.993", "tls.expiry")
RECORDING_CONNECTIONS = 4  # of the pool's 10 steady ones (control_plane/db/engine.py)
__all__ = ["Checker", "Sweep", "hooks"]


def default_owner() -> str:
    """This process's name on its leases: host, pid and a random part, so a restarted
    process never mistakes its predecessor's leases for its own."""
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _unknown(checks_: tuple[str, ...], detail: str) -> list[Result]:
    return [Result(check, "unknown", "warning", detail) for check in checks_]


class Checker:
    """Runs one claimed server's checks and stores their results."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        owner: str | None = None,
        ports: probes.MailPorts = probes.MailPorts(),
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db, self.settings, self.ports, self.clock = db, settings, ports, clock
        self.owner = owner or default_owner()
        self.rules = service.Rules.of(settings)
        self.tls_context = probes.tls_context(settings)
        # Probes and DNS give up by themselves; this bounds a run as a whole, inside its lease.
        self.deadline = settings.health_lease_seconds * 0.8
        # Many probes end together; storing their results a few at a time keeps the sweep
        # inside the pool's steady connections (overflow ones are opened and closed each
        # time) and leaves some to the API.
        self._storing = asyncio.Semaphore(RECORDING_CONNECTIONS)

    async def run(self, claim: schedule.Claim) -> list[Result]:
        """The claimed server's checks: probes outside any transaction, then the results
        stored (and the lease ended) in one."""
        try:
            remote = await self._remote(claim)
            async with self._storing:
                return await self.db.transact(lambda session: self._record(session, claim, remote))
        except BaseException:
            with contextlib.suppress(Exception):
                await self.db.transact(lambda s: schedule.release(s, claim, self.clock()))
            raise

    async def run_now(self, server_id: uuid.UUID) -> list[Result]:
        """A run asked for (``POST …/health/run``): the server's checks now, DNS included."""

        async def take(session: AsyncSession) -> schedule.Claim | None:
            server = await session.get(Server, server_id)
            if server is None:
                raise NotFound("server", server_id)
            if server.state not in schedule.CHECKED_STATES:
                raise Conflict(
                    f"server {server_id} is {server.state}; its health is checked once it is ready"
                )
            return await schedule.claim_one(
                session, server, self.owner, self.clock(), self.settings
            )

        claim = await self.db.transact(take)
        if claim is None:
            raise Conflict(f"the checks of server {server_id} are running now; try again shortly")
        return await self.run(claim)

    async def _remote(self, claim: schedule.Claim) -> list[Result]:
        expected: list[str] = []
        parts: list[Awaitable[list[Result]]] = []
        if claim.mail_stack == "mailu" and claim.ipv4 and claim.mail_hostname:
            expected += PORT_CHECKS
            parts.append(self._ports(claim))
        if claim.dns_due:
            expected.append("dns.drift")
            parts.append(self._dns(claim))
        if not parts:
            return []
        try:
            async with asyncio.timeout(self.deadline):
                done = await asyncio.gather(*parts)
        except TimeoutError:
            detail = f"the checks did not finish within {self.deadline:g} s"
            return _unknown(tuple(expected), detail)
        return [result for part in done for result in part]

    async def _ports(self, claim: schedule.Claim) -> list[Result]:
        assert claim.ipv4 is not None
        try:
            return await probes.probe_mail_ports(
                claim.ipv4,
                claim.mail_hostname,
                timeout=self.settings.health_probe_timeout_seconds,
                tls_context=self.tls_context,
                now=self.clock(),
                ports=self.ports,
            )
        except Exception as exc:  # a probe bug must not look like a healthy port
            log.exception("probing the mail ports of %s failed", claim.server_id)
            return _unknown(PORT_CHECKS, f"the probe failed: {exc!r}")

    async def _dns(self, claim: schedule.Claim) -> list[Result]:
        async def read(session: AsyncSession) -> list[checks.ZoneCheck]:
            server = await session.get(Server, claim.server_id)
            return await checks.dns_inputs(session, server) if server is not None else []

        try:
            zones = await self.db.transact(read)
            return await checks.dns_drift(zones, self.settings)
        except Exception as exc:
            log.exception("the DNS drift check of %s failed", claim.server_id)
            return _unknown(("dns.drift",), f"the check failed: {exc!r}")

    async def _record(
        self, session: AsyncSession, claim: schedule.Claim, remote: list[Result]
    ) -> list[Result]:
        now = self.clock()
        server = await session.get(Server, claim.server_id)
        if server is None:
            return []
        if server.state not in schedule.CHECKED_STATES:
            await schedule.release(session, claim, now)
            return []
        results = [*await self._local(session, server, now), *remote]
        await service.record_results(session, server.id, results, now, rules=self.rules)
        await schedule.release(session, claim, now)
        return results

    async def _local(self, session: AsyncSession, server: Server, now: datetime) -> list[Result]:
        """The checks read from the database, and the agent commands queued for the rest."""
        row = await session.get(HealthSchedule, server.id)
        unknown_after = timedelta(seconds=self.settings.agent_unknown_after_seconds)
        results = [checks.agent_link(server, row, now, unknown_after)]
        parts: list[tuple[str, Callable[[], Awaitable[list[Result]]]]] = [
            ("backups", lambda: checks.backup_results(session, server, now)),
            ("tls", lambda: checks.tls_results(session, server)),
            ("resources", lambda: self._resources(session, server, now)),
        ]
        if server.mail_stack == "mailu":
            parts.append(("mailu", lambda: self._mailu(session, server, now)))
            parts.append(("outbound", lambda: self._outbound(session, server)))
        for name, part in parts:
            try:  # one part's failure (rolled back alone) must not lose the others' results
                async with session.begin_nested():
                    results += await part()
            except Exception:
                log.exception("the %s checks of server %s failed", name, server.id)
        return results

    async def _mailu(self, session: AsyncSession, server: Server, now: datetime) -> list[Result]:
        """Ask for ``mailu.status`` (one at a time; its handler records the results); one
        still unanswered after an interval makes them unknown."""
        interval = self.rules.interval
        pending = await checks.mailu_status_pending(session, server)
        if pending is not None:
            return (
                checks.mailu_unanswered(pending, now)
                if now - pending.created_at >= interval
                else []
            )
        command = await stack.request_status(session, server)
        command.expires_at = now + interval  # undelivered by the next run: unknown
        server_id = server.id
        event.listen(
            session.sync_session, "after_commit", lambda _s: handlers.wake(server_id), once=True
        )
        return []

    async def _resources(
        self, session: AsyncSession, server: Server, now: datetime
    ) -> list[Result]:
        return await resources.resource_results(session, server, self.settings, now)

    async def _outbound(self, session: AsyncSession, server: Server) -> list[Result]:
        """The agent connects out to the observer; its handler records ``smtp.outbound``."""
        await outbound.queue_outbound_probe(session, server, self.settings)
        return []


class Sweep:
    """The loop ``mailfleet serve`` runs: claim what is due, check it, at most
    ``health_concurrency`` servers at a time; idle, it looks again every
    ``health_tick_seconds`` or when this process makes a server due."""

    def __init__(self, db: Database, settings: Settings, checker: Checker | None = None) -> None:
        self.db, self.settings = db, settings
        self.checker = checker or Checker(db, settings)
        self.concurrency = settings.health_concurrency
        self._wake = asyncio.Event()
        self._running: set[asyncio.Task[list[Result]]] = set()

    def wake(self) -> None:
        self._wake.set()

    async def claim(self, limit: int) -> list[schedule.Claim]:
        owner, clock = self.checker.owner, self.checker.clock
        return await self.db.transact(
            lambda session: schedule.claim_due(session, owner, limit, clock(), self.settings)
        )

    def _start(self, claim: schedule.Claim) -> None:
        task = asyncio.create_task(self.checker.run(claim))
        self._running.add(task)

        def finished(done: asyncio.Task[list[Result]]) -> None:
            self._running.discard(done)
            if not done.cancelled() and done.exception() is not None:
                log.error("health checks of %s failed: %r", claim.server_id, done.exception())
            self.wake()

        task.add_done_callback(finished)

    async def run_once(self) -> int:
        """Check every server due now and wait for them; how many were checked."""
        count = 0
        while claims := await self.claim(self.concurrency):
            count += len(claims)
            for claim in claims:
                self._start(claim)
            await asyncio.gather(*self._running, return_exceptions=True)
        return count

    async def run(self) -> None:
        stop = schedule.on_due(self.wake)
        try:
            while True:
                self._wake.clear()
                free = self.concurrency - len(self._running)
                try:
                    claims = await self.claim(free) if free > 0 else []
                except Exception:
                    log.exception("claiming due health checks failed; trying again")
                    claims = []
                for claim in claims:
                    self._start(claim)
                if claims and len(claims) == free:
                    continue  # more may be due; a finished run wakes this loop when full
                await woken(self._wake, self.settings.health_tick_seconds)
        finally:
            stop()
            for task in list(self._running):
                task.cancel()
            await asyncio.gather(*self._running, return_exceptions=True)
