"""Periodic jobs: small transactions that look for due work (a DKIM switch, a scheduled
backup) and turn it into rows and agent commands.

Every replica runs them; each job claims its rows ``FOR UPDATE SKIP LOCKED`` (or SQLite's
single writer), so two replicas never do the same piece of work. A failing job is logged
and tried again on the next round; it never stops the others.

A plain timer round runs only the jobs no replica has run within the interval (one upsert
claims them: ``periodic_rounds``), so N replicas scan for due work as often as one does,
not N times as often. A replica's first round and rounds woken early (a nudge, an item
falling due) run every job: they have a reason to look now.

A job whose work falls due at known times (an escalation step, a delivery retry) says when
its next item is due (``next_due``, read from the database, so it holds for work another
replica queued); the runner sleeps until then when that is sooner than its interval, rather
than letting a 30-second tick add to an alert's latency. Work that becomes due at once (a
new incident, a queued delivery) calls ``nudge_after_commit`` in its transaction, which wakes
this process's runners once that transaction has committed (another replica's runner finds it
at its next round).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from control_plane.db.base import utcnow
from control_plane.db.engine import Database
from control_plane.db.leases import replica_id
from control_plane.db.rounds import claim_round
from control_plane.waiting import woken

log = logging.getLogger(__name__)

_runners: weakref.WeakSet[PeriodicJobs] = weakref.WeakSet()
_NUDGE_KEY = "mailfleet.periodic.nudge"


def nudge() -> None:
    """Wake every periodic runner of this process now."""
    for runner in list(_runners):
        runner.wake()


def nudge_after_commit(session: AsyncSession) -> None:
    """Wake the runners once ``session``'s transaction commits (not before: a runner woken
    early would find nothing yet, and sleep its whole interval)."""
    sync = session.sync_session
    if sync.info.get(_NUDGE_KEY):
        return
    sync.info[_NUDGE_KEY] = True

    def committed(_: Session) -> None:
        sync.info.pop(_NUDGE_KEY, None)
        nudge()

    def rolled_back(_: Session, __: object) -> None:
        sync.info.pop(_NUDGE_KEY, None)

    event.listen(sync, "after_commit", committed, once=True)
    event.listen(sync, "after_soft_rollback", rolled_back, once=True)


@dataclass(frozen=True)
class Job:
    name: str
    run: Callable[[AsyncSession], Awaitable[int]]  # returns how many items it moved
    next_due: Callable[[AsyncSession], Awaitable[datetime | None]] | None = None


class PeriodicJobs:
    def __init__(
        self,
        db: Database,
        jobs: Sequence[Job],
        interval: float,
        after_work: Callable[[], None] = lambda: None,
        timed: Callable[[str, float], None] = lambda job, seconds: None,
    ) -> None:
        self.db, self.jobs, self.interval, self.after_work = db, jobs, interval, after_work
        self.timed = timed  # each job's wall time per round (a slow one shows on /metrics)
        self._wake = asyncio.Event()
        self.owner = replica_id()
        _runners.add(self)

    def wake(self) -> None:
        self._wake.set()

    async def run_once(self, *, timer_round: bool = False) -> dict[str, int]:
        """Every job once (on a ``timer_round``, those no replica ran within the interval),
        each in its own transaction; how many items each moved."""
        jobs = self.jobs
        if timer_round:
            try:
                names = [job.name for job in jobs]
                ours = await self.db.transact(
                    lambda session: claim_round(session, names, self.interval, self.owner)
                )
            except Exception:
                log.exception("claiming this round's periodic jobs failed; running them all")
            else:
                jobs = [job for job in jobs if job.name in ours]
        moved: dict[str, int] = {}
        for job in jobs:
            started = time.monotonic()
            try:
                moved[job.name] = await self.db.transact(job.run)
            except Exception:
                log.exception("periodic job %s failed; trying again next round", job.name)
            self.timed(job.name, time.monotonic() - started)
        if any(moved.values()):
            self.after_work()
        return moved

    async def seconds_to_next(self) -> float:
        """The interval, or less when a job's next item falls due sooner. An item already due
        had its chance this round (held, leased elsewhere): it is no reason to spin."""
        wait = self.interval
        for job in self.jobs:
            if job.next_due is None:
                continue
            try:
                due = await self.db.transact(job.next_due)
            except Exception:
                log.exception("periodic job %s: next due time unavailable", job.name)
                continue
            ahead = (due - utcnow()).total_seconds() if due is not None else 0.0
            if ahead > 0:
                wait = min(wait, ahead)
        return wait

    async def run(self) -> None:
        timer_round = False  # the first round, at start, runs every job
        while True:
            await self.run_once(timer_round=timer_round)
            wait = await self.seconds_to_next()
            nudged = await woken(self._wake, wait)
            self._wake.clear()
            timer_round = not nudged and wait >= self.interval
