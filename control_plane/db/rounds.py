"""Rounds of periodic work shared by the replicas: which replica runs a job this interval.

Without it, N replicas would each scan for due work every round, N times the queries of one
for nothing (each job's own claims already keep two replicas off the same item).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import String
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db.base import Base, UTCDateTime, utcnow
from control_plane.db.writes import insert_for


class PeriodicRound(Base):
    """When a job last ran on a timer round, and where: the replicas' shared clock for it."""

    __tablename__ = "periodic_rounds"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    ran_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ran_by: Mapped[str] = mapped_column(String(120))


# A round claims a job last run more than this share of the interval ago: replicas' rounds
# drift by the time their jobs take, and a job must not skip a whole round for that.
CLAIM_SHARE = 0.9


async def claim_round(
    session: AsyncSession, names: Sequence[str], interval: float, owner: str
) -> set[str]:
    """The jobs this replica runs on this timer round: those no replica ran within the
    interval, marked as run now. One statement, so two replicas never both claim a job;
    the claim commits before the jobs run (holding it through them would stall the other
    replica's runner behind a slow job), so a failed job is tried again a round later."""
    if not names:
        return set()
    now = utcnow()
    insert = insert_for(session, PeriodicRound)
    statement = (
        insert.values([{"name": name, "ran_at": now, "ran_by": owner} for name in names])
        .on_conflict_do_update(
            index_elements=["name"],
            set_={"ran_at": insert.excluded.ran_at, "ran_by": insert.excluded.ran_by},
            where=PeriodicRound.ran_at < now - timedelta(seconds=interval * CLAIM_SHARE),
        )
        .returning(PeriodicRound.name)
    )
    return set((await session.scalars(statement)).all())
