"""Running due workflow steps: claimed under a lease, so any number of replicas share the work
and a replica dying mid-step hands its rows over when the lease lapses.

A workflow row (an IP switch, a resize) has ``id``, ``state``, ``next_run_at`` (when a
replica should look at it again; NULL: nothing left to do) and the lease columns; its steps
are rows with ``position``. A subclass says which step is current, runs it (``outcome``)
and records the outcome on the rows (``record``), in a transaction under the lease.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.base import utcnow
from control_plane.db.engine import Database
from control_plane.db.leases import Leases
from control_plane.errors import MailFleetError
from control_plane.provisioning.workflow import Fail, Retry, Wait, error_outcome
from control_plane.waiting import woken
from control_plane.workflows.steps import Done

log = logging.getLogger(__name__)
CONCURRENCY = 20
R = TypeVar("R")  # the workflow's row
S = TypeVar("S")  # its step rows
Outcome = Done | Wait | Retry | Fail


RETRY_CAP_SECONDS = 60.0


def later_seconds(outcome: Wait | Retry, attempts: int, tick: float) -> float:
    """When a step that waits or failed in a way that may pass runs again: a Wait after its
    own delay (or a tick); a Retry after an exponential, jittered back-off on ``attempts``."""
    if isinstance(outcome, Retry):
        delay = min(RETRY_CAP_SECONDS, tick * 2.0**attempts)
        return delay * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not a secret
    return min(outcome.seconds or tick, RETRY_CAP_SECONDS)


class Wakers:
    """The runners of one kind in this process, woken when a row becomes due (after a
    commit that queued or nudged one)."""

    def __init__(self) -> None:
        self._wakers: list[Callable[[], None]] = []

    def __call__(self, _session: Any = None) -> None:
        for wake in list(self._wakers):
            wake()

    def add(self, wake: Callable[[], None]) -> None:
        self._wakers.append(wake)

    def remove(self, wake: Callable[[], None]) -> None:
        self._wakers.remove(wake)


class StepRunner(Generic[R, S]):
    """One per control-plane process and workflow kind; any number per database."""

    model: type[R]
    step_model: type[S]
    parent: str  # the step rows' column naming the workflow row
    what: str  # the work's name in logs
    wakers: Wakers

    def __init__(self, db: Database, lease_seconds: float, tick_seconds: float) -> None:
        self.db, self.tick = db, tick_seconds
        self.leases: Leases[R] = Leases(db, self.model, lease_seconds, self.what)
        self.owner = self.leases.owner
        self._wake = asyncio.Event()
        self._running: dict[uuid.UUID, asyncio.Task[None]] = {}

    # -- what a workflow says ---------------------------------------------------------------

    def current(self, row: R, steps: Sequence[S]) -> S | None:
        """The step the row is at (None: nothing left to run)."""
        raise NotImplementedError

    async def outcome(self, row: R, step: S) -> Outcome:
        """Run ``step`` (outside any transaction; errors of ours are mapped by the caller)."""
        raise NotImplementedError

    async def record(
        self, session: AsyncSession, row: R, steps: Sequence[S], step: S, outcome: Outcome
    ) -> None:
        """Move the rows by ``outcome`` (inside the transaction, lease taken back)."""
        raise NotImplementedError

    # -- the loop ---------------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Claim and run due steps until cancelled; leases are let go on the way out."""
        self.wakers.add(self.wake)
        try:
            while True:
                free = CONCURRENCY - len(self._running)
                if free > 0:
                    try:
                        for row in await self.claim(free):
                            row_id: uuid.UUID = row.id  # type: ignore[attr-defined]
                            task = asyncio.create_task(self._run_step(row))
                            self._running[row_id] = task
                            task.add_done_callback(functools.partial(self._done, row_id))
                    except Exception:
                        log.exception("%s: claiming due rows failed", self.what)
                await woken(self._wake, self.tick)
                self._wake.clear()
        finally:
            self.wakers.remove(self.wake)
            await self.leases.let_go(self._running.values())

    def _done(self, row_id: uuid.UUID, _task: asyncio.Task[None]) -> None:
        self._running.pop(row_id, None)
        self._wake.set()

    async def claim(self, limit: int) -> list[R]:
        table: Any = self.model
        return await self.leases.claim(
            lambda now: (table.next_run_at <= now,), table.next_run_at, limit, skip=self._running
        )

    async def _run_step(self, row: R) -> None:
        row_id: uuid.UUID = row.id  # type: ignore[attr-defined]
        async with self.db.session() as session:
            steps = await self.steps(session, row_id)
        step = self.current(row, steps)
        if step is None:  # nothing left (a stale next_run_at): clear it
            await self.db.transact(lambda s: self._apply(s, row, None, None))
            return
        renew = asyncio.create_task(self.leases.keep(row_id))
        try:
            outcome = await self._outcome(row, step)
        finally:
            renew.cancel()
        try:
            await self.db.transact(lambda s: self._apply(s, row, step, outcome))
        except Exception:
            log.exception("%s: recording the outcome for %s failed", self.what, row_id)

    async def _outcome(self, row: R, step: S) -> Outcome:
        try:
            return await self.outcome(row, step)
        except MailFleetError as exc:
            return error_outcome(exc)
        except Exception as exc:
            log.exception("%s: step %s of %s failed", self.what, step, row)
            return Retry(f"internal error: {type(exc).__name__}")

    async def _apply(
        self, session: AsyncSession, claimed: R, step: S | None, outcome: Outcome | None
    ) -> None:
        claimed_id: uuid.UUID = claimed.id  # type: ignore[attr-defined]
        row: Any = await self.leases.take_back(session, claimed_id)
        if row is None:
            return
        steps = await self.steps(session, claimed_id)
        if step is None or outcome is None or row.state != claimed.state:  # type: ignore[attr-defined]
            row.next_run_at = utcnow() if self.current(row, steps) else None
            return
        step_id = step.id  # type: ignore[attr-defined]
        current = next(s for s in steps if s.id == step_id)  # type: ignore[attr-defined]
        before = row.state
        await self.record(session, row, steps, current, outcome)
        if row.state != before:
            log.info("%s: %s is %s (%s)", self.what, row.id, row.state, row.error or "")

    async def steps(self, session: AsyncSession, row_id: uuid.UUID) -> list[S]:
        table: Any = self.step_model
        rows = await session.scalars(
            select(self.step_model)
            .where(getattr(table, self.parent) == row_id)
            .order_by(table.position)
        )
        return list(rows)
