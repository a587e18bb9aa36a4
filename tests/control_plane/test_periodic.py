"""Periodic jobs: each runs in its own transaction; one failing never stops the others."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.base import utcnow
from control_plane.db.engine import Database
from control_plane.db.rounds import claim_round
from control_plane.periodic import Job, PeriodicJobs, nudge_after_commit
from control_plane.tenants.models import Tenant


async def test_a_failing_job_is_rolled_back_and_the_others_still_run(db: Database) -> None:
    name = f"periodic-{uuid.uuid4().hex[:8]}"
    woken: list[bool] = []

    async def broken(session: AsyncSession) -> int:
        session.add(Tenant(name=name + "-broken"))
        await session.flush()
        raise RuntimeError("boom")

    async def working(session: AsyncSession) -> int:
        session.add(Tenant(name=name))
        return 1

    timed: list[tuple[str, float]] = []
    jobs = PeriodicJobs(db, [Job("broken", broken), Job("working", working)], 60.0,
                        lambda: woken.append(True),
                        lambda job, seconds: timed.append((job, seconds)))  # fmt: skip
    assert await jobs.run_once() == {"working": 1}
    assert woken == [True]
    assert [job for job, _ in timed] == ["broken", "working"]  # the failed one is timed too
    assert all(0 < seconds < 30 for _, seconds in timed)
    async with db.session() as session:
        names = set((await session.scalars(select(Tenant.name).where(
            Tenant.name.startswith(name)))).all())  # fmt: skip
    assert names == {name}


async def test_the_runner_sleeps_until_the_soonest_due_item_not_its_whole_interval(
    db: Database,
) -> None:
    soon = utcnow() + timedelta(seconds=2)

    async def nothing(session: AsyncSession) -> int:
        return 0

    async def due_soon(session: AsyncSession) -> datetime | None:
        return soon

    async def overdue(session: AsyncSession) -> datetime | None:
        return utcnow() - timedelta(seconds=5)  # had its chance this round: no reason to spin

    async def broken(session: AsyncSession) -> datetime | None:
        raise RuntimeError("boom")

    jobs = PeriodicJobs(
        db,
        [Job("a", nothing, due_soon), Job("b", nothing, overdue), Job("c", nothing, broken)],
        60.0,
    )
    wait = await jobs.seconds_to_next()
    assert 0 < wait <= 2
    assert await PeriodicJobs(db, [Job("b", nothing, overdue)], 60.0).seconds_to_next() == 60.0


async def test_a_nudge_wakes_the_runners_after_the_commit_and_not_on_rollback(
    db: Database,
) -> None:
    async def nothing(session: AsyncSession) -> int:
        return 0

    jobs = PeriodicJobs(db, [Job("a", nothing)], 60.0)
    async with db.session() as session:
        nudge_after_commit(session)
        nudge_after_commit(session)  # once per transaction is enough
        assert not jobs._wake.is_set()  # not before the commit: a runner would find nothing
    assert jobs._wake.is_set()
    jobs._wake.clear()

    with contextlib.suppress(RuntimeError):
        async with db.session() as session:
            nudge_after_commit(session)
            raise RuntimeError("rolled back")
    assert not jobs._wake.is_set()


async def test_a_timer_round_runs_each_job_on_one_replica_per_interval(db: Database) -> None:
    """Two replicas on one database: a job the other ran within the interval is skipped on a
    timer round, taken again once the interval has passed, and run on an early (woken)
    round whoever ran it last."""
    ran: list[tuple[str, str]] = []

    def job(name: str, replica: str) -> Job:
        async def run(session: AsyncSession) -> int:
            ran.append((replica, name))
            return 0

        return Job(name, run)

    prefix = f"gate-{uuid.uuid4().hex[:8]}"
    names = [f"{prefix}-a", f"{prefix}-b"]
    interval = 0.5
    first = PeriodicJobs(db, [job(n, "first") for n in names], interval)
    second = PeriodicJobs(db, [job(n, "second") for n in names], interval)

    await first.run_once(timer_round=True)
    await second.run_once(timer_round=True)  # the first ran both just now
    assert ran == [("first", names[0]), ("first", names[1])]

    ran.clear()
    await second.run_once()  # woken early: it has a reason to look now
    assert ran == [("second", names[0]), ("second", names[1])]

    ran.clear()
    await asyncio.sleep(interval)
    await second.run_once(timer_round=True)  # an interval on: its turn
    await first.run_once(timer_round=True)
    assert ran == [("second", names[0]), ("second", names[1])]


async def test_two_replicas_claiming_the_same_round_at_once_split_it(db: Database) -> None:
    names = [f"race-{uuid.uuid4().hex[:8]}-{i}" for i in range(20)]
    claims = await asyncio.gather(
        *(
            db.transact(lambda session, o=owner: claim_round(session, names, 60.0, o))
            for owner in ("one", "two")
        )
    )
    assert claims[0] | claims[1] == set(names)
    assert not claims[0] & claims[1]
