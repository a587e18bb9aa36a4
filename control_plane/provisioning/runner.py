"""Runs the provisioning workflow: claims due servers, runs their step, records the outcome.

Claims are leases, not open transactions: a claim marks the row with this runner's id and an
expiry (``MAILFLEET_PROVISION_LEASE_SECONDS``), renewed while the step runs, so a slow
provider call never holds a database lock (on SQLite that would block every writer). A
runner that dies leaves its leases to expire; another replica — or the same one restarted —
then takes the step over and, steps being idempotent, finishes it.

On PostgreSQL the claim is ``SELECT … FOR UPDATE SKIP LOCKED``, so replicas claiming at the
same moment take different rows; SQLite's single writer (BEGIN IMMEDIATE) gives the same.
Every write of an outcome is guarded by the lease: a runner that lost its lease (or whose
server was sent to ``deprovisioning`` meanwhile) keeps the facts it learned (an instance id)
but does not move the state.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import random
import secrets
import socket
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.base import utcnow
from control_plane.db.engine import Database
from control_plane.errors import MailFleetError
from control_plane.provisioning import events, nudge
from control_plane.provisioning.providers.base import ProviderError
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
    step_timeout,
)
from control_plane.servers.models import Server
from control_plane.settings import Settings

log = logging.getLogger(__name__)
RETRY_CAP_SECONDS = 60.0
# How long stopping waits for cancelled steps: one that does not answer cancellation (a call
# that swallows it) must not hold shutdown; its lease is released all the same and lapses
# for any other holder.
RELEASE_WAIT_SECONDS = 10.0


class ProvisioningRunner:
    """One per control-plane process (``serve`` starts it); any number per database."""

    def __init__(self, settings: Settings, db: Database, workflow: Workflow) -> None:
        self.settings, self.db, self.workflow = settings, db, workflow
        self.owner = f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(4)}"
        self.lease = timedelta(seconds=settings.provision_lease_seconds)
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
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._idle_seconds())
                self._wake.clear()
        finally:
            stop_listening()
            await self._release_all()

    def _idle_seconds(self) -> float:
        return min(1.0, self.settings.provision_poll_seconds)

    def _done(self, server_id: uuid.UUID, _task: asyncio.Task[None]) -> None:
        self._running.pop(server_id, None)
        self._wake.set()

    async def claim(self, limit: int) -> list[Server]:
        async def take(session: AsyncSession) -> list[Server]:
            now = utcnow()
            ids = list(
                (
                    await session.scalars(
                        select(Server.id)
                        .where(
                            Server.state.in_(ACTIVE_STATES),
                            Server.next_step_at <= now,
                            or_(Server.lease_expires_at.is_(None), Server.lease_expires_at < now),
                            Server.id.not_in(list(self._running)),
                        )
                        .order_by(Server.next_step_at)
                        .limit(limit)
                        .with_for_update(skip_locked=True)
                    )
                ).all()
            )
            if not ids:
                return []
            await session.execute(
                update(Server)
                .where(Server.id.in_(ids))
                .values(lease_owner=self.owner, lease_expires_at=now + self.lease)
                .execution_options(synchronize_session=False)
            )
            return list((await session.scalars(select(Server).where(Server.id.in_(ids)))).all())

        return await self.db.transact(take)

    async def _run_step(self, server: Server) -> None:
        renew = asyncio.create_task(self._renew(server.id))
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
        except ProviderError as exc:
            return Retry(exc.message) if exc.retryable else Fail(exc.message)
        except MailFleetError as exc:
            return Retry(exc.detail)
        except Exception as exc:
            log.exception("provisioning: step %s of %s failed", server.state, server.id)
            return Retry(f"internal error: {type(exc).__name__}")

    async def _renew(self, server_id: uuid.UUID) -> None:
        interval = self.lease.total_seconds() / 3
        while True:
            await asyncio.sleep(interval)

            async def extend(session: AsyncSession) -> int:
                result: Any = await session.execute(
                    update(Server)
                    .where(Server.id == server_id, Server.lease_owner == self.owner)
                    .values(lease_expires_at=utcnow() + self.lease)
                    .execution_options(synchronize_session=False)
                )
                return int(result.rowcount)

            try:
                if not await self.db.transact(extend):
                    log.warning("provisioning: lost the lease on %s", server_id)
                    return
            except Exception:
                log.exception("provisioning: renewing the lease on %s failed", server_id)

    async def _apply(self, session: AsyncSession, claimed: Server, outcome: Outcome) -> None:
        row = await session.scalar(
            select(Server)
            .where(Server.id == claimed.id, Server.lease_owner == self.owner)
            .with_for_update()
        )
        if row is None:
            log.warning(
                "provisioning: %s changed hands during its step; outcome dropped", claimed.id
            )
            return
        now = utcnow()
        row.lease_owner, row.lease_expires_at = None, None
        if isinstance(outcome, Advance | Wait | Retry):
            for name, value in outcome.changes.items():
                setattr(row, name, value)  # facts learned stand even if the state moved on
        if row.state != claimed.state:
            row.next_step_at = now  # moved meanwhile (deprovision requested): run that next
            return
        if isinstance(outcome, Deleted):
            log.info("provisioning: %s", outcome.message)
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

    async def _release_all(self) -> None:
        """Let go of running steps: cancel them and drop their leases for another runner."""
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=RELEASE_WAIT_SECONDS)
            for task in stuck:
                log.warning("provisioning: %s did not stop when cancelled", task.get_name())

        async def release(session: AsyncSession) -> None:
            await session.execute(
                update(Server)
                .where(Server.lease_owner == self.owner)
                .values(lease_owner=None, lease_expires_at=None)
                .execution_options(synchronize_session=False)
            )

        with contextlib.suppress(Exception):
            await self.db.transact(release)
