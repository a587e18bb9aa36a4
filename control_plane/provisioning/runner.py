"""Runs the provisioning workflow: claims due servers, runs their step, records the outcome.

Claims are leases (``control_plane.db.leases``, ``MAILFLEET_PROVISION_LEASE_SECONDS``),
renewed while the step runs, so a slow provider call never holds a database lock. A runner
that dies leaves its leases to expire; another replica — or the same one restarted — then
takes the step over and, steps being idempotent, finishes it. Every write of an outcome is
guarded by the lease: a runner that lost its lease (or whose server was sent to
``deprovisioning`` meanwhile) keeps the facts it learned (an instance id) but does not move
the state.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import uuid
from datetime import timedelta

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.costs import meter
from control_plane.costs.jobs import meter_bandwidth
from control_plane.db.base import utcnow
from control_plane.db.engine import Database
from control_plane.db.leases import Leases
from control_plane.errors import MailFleetError
from control_plane.provisioning import events, nudge
from control_plane.provisioning.workflow import (
    ACTIVE_STATES,
    Advance,
    Deleted,
    Fail,
    Outcome,
    Retry,
    Wait,
    Workflow,
    enter,
    error_outcome,
    step_timeout,
)
from control_plane.servers.models import Server
from control_plane.settings import Settings
from control_plane.waiting import woken

log = logging.getLogger(__name__)
RETRY_CAP_SECONDS = 60.0


class ProvisioningRunner:
    """One per control-plane process (``serve`` starts it); any number per database."""

    def __init__(self, settings: Settings, db: Database, workflow: Workflow) -> None:
        self.settings, self.db, self.workflow = settings, db, workflow
        self.leases = Leases(db, Server, settings.provision_lease_seconds, "provisioning")
        self.owner = self.leases.owner
        self._wake = asyncio.Event()  # also set by nudges (an agent arriving, a result)
        self._running: dict[uuid.UUID, asyncio.Task[None]] = {}

    def wake(self) -> None:
        """Look for due work now (a server was created or deleted)."""
        self._wake.set()

    async def run(self) -> None:
        """Claim and run due steps until cancelled; running steps are let go on the way out."""
        stop_listening = nudge.on_nudge(self.wake)
        try:
            while True:
                free = self.settings.provision_concurrency - len(self._running)
                if free > 0:
                    try:
                        for server in await self.claim(free):
                            task = asyncio.create_task(
                                self._run_step(server), name=f"provisioning step of {server.id}"
                            )
                            self._running[server.id] = task
                            task.add_done_callback(functools.partial(self._done, server.id))
                    except Exception:
                        log.exception("provisioning: claiming due servers failed")
                await woken(self._wake, self._idle_seconds())
                self._wake.clear()
        finally:
            stop_listening()
            await self.leases.let_go(self._running.values())

    def _idle_seconds(self) -> float:
        return min(1.0, self.settings.provision_poll_seconds)

    def _done(self, server_id: uuid.UUID, _task: asyncio.Task[None]) -> None:
        self._running.pop(server_id, None)
        self._wake.set()

    async def claim(self, limit: int) -> list[Server]:
        return await self.leases.claim(
            lambda now: (Server.state.in_(ACTIVE_STATES), Server.next_step_at <= now),
            Server.next_step_at,
            limit,
            skip=self._running,
        )

    async def run_one(self, server_id: uuid.UUID) -> bool:
        """Run ``server_id``'s step now if it is due and no one holds it; whether it ran.
        (Tests drive one server step by step with it, touching no other server.)"""
        claimed = await self.leases.claim(
            lambda now: (
                Server.id == server_id,
                Server.state.in_(ACTIVE_STATES),
                Server.next_step_at <= now,
            ),
            Server.next_step_at,
            1,
        )
        for server in claimed:
            await self._run_step(server)
        return bool(claimed)

    async def _run_step(self, server: Server) -> None:
        renew = asyncio.create_task(self.leases.keep(server.id))
        try:
            outcome = await self._outcome(server)
        except asyncio.CancelledError:
            renew.cancel()
            raise
        finally:
            renew.cancel()
        try:
            await self.db.transact(lambda session: self._apply(session, server, outcome))
        except Exception:
            log.exception("provisioning: recording the outcome for %s failed", server.id)

    async def _outcome(self, server: Server) -> Outcome:
        try:
            return await self.workflow.step(server)
        except MailFleetError as exc:
            return error_outcome(exc)
        except Exception as exc:
            log.exception("provisioning: step %s of %s failed", server.state, server.id)
            return Retry(f"internal error: {type(exc).__name__}")

    async def _apply(self, session: AsyncSession, claimed: Server, outcome: Outcome) -> None:
        row = await self.leases.take_back(session, claimed.id)
        if row is None:
            return
        now = utcnow()
        if isinstance(outcome, Advance | Wait | Retry):
            for name, value in outcome.changes.items():
                setattr(row, name, value)  # facts learned stand even if the state moved on
            if outcome.changes.get("instance_id") and meter.metered(row):
                # The VPS exists at the provider: it is billed from now, whatever comes next.
                await meter.open_span(session, row, "server", row.plan or "", now)
        if row.state != claimed.state:
            row.next_step_at = now  # moved meanwhile (deprovision requested): run that next
            return
        if isinstance(outcome, Deleted):
            log.info("provisioning: %s", outcome.message)
            # The ledger outlives the row: its spans end (if termination did not end them)
            # and its last bandwidth is read before the metrics go with it.
            await meter_bandwidth(session, [row], now)
            await meter.close_server(session, row.id, now)
            await session.execute(delete(Server).where(Server.id == row.id))
            return
        if isinstance(outcome, Advance):
            enter(row, outcome.to, self.settings)
            events.record(session, row, "state", outcome.message)
            log.info("provisioning: %s %s: %s", row.id, row.state, outcome.message)
            return
        if isinstance(outcome, Fail):
            self._fail(session, row, outcome.reason)
            return
        message = outcome.message
        deadline = row.step_deadline_at
        if deadline is not None and now >= deadline:
            limit = step_timeout(self.settings, row.state) or 0
            self._fail(session, row, f"{row.state} did not finish within {limit:.0f} s: {message}")
            return
        if isinstance(outcome, Retry):
            row.step_attempts += 1
            delay = min(
                RETRY_CAP_SECONDS, self.settings.provision_poll_seconds * 2**row.step_attempts
            )
            delay *= random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not a secret
            kind = "retry"
        else:
            delay = outcome.seconds or self.settings.provision_poll_seconds
            kind = "progress"
        row.next_step_at = now + timedelta(seconds=delay)
        if await events.last_message(session, row.id) != message:
            events.record(session, row, kind, message)

    def _fail(self, session: AsyncSession, row: Server, reason: str) -> None:
        log.warning("provisioning: %s failed in %s: %s", row.id, row.state, reason)
        row.failed_step, row.failure_reason = row.state, reason
        row.state, row.state_changed_at = "failed", utcnow()
        row.next_step_at = row.step_deadline_at = None
        events.record(session, row, "failed", reason)
