"""Daily range partitions of raw samples and 1-minute rollups (PostgreSQL only).

Each of the two tables is ``PARTITION BY RANGE`` on its time column with one partition per
UTC day, named ``<table>_pYYYYMMDD``. Partitions are made some days ahead (at start and by
the maintenance job) and retention drops whole partitions, which frees the space at once
and costs no vacuum, unlike DELETE. There is no default partition: a sample for a day that
has no partition cannot be stored, so ingest checks the days first (``storable_days``).
SQLite keeps plain tables; every function here is PostgreSQL's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db import locks

# Partitioned table → its partition key (the time column).
PARTITIONED = {"metric_samples": "sampled_at", "metric_rollups_1m": "bucket"}
# pg_advisory_xact_lock key ("mfpart"): replicas making or dropping partitions take turns.
_NAME = re.compile(r"^(?P<table>[a-z0-9_]+)_p(?P<day>\d{8})$")
_BOUND = re.compile(r"^FOR VALUES FROM \('([^']+)'\) TO \('([^']+)'\)$")


def partition_name(table: str, day: date) -> str:
    return f"{table}_p{day:%Y%m%d}"


def is_partition(name: str) -> bool:
    """A partition's table name (autogenerate and schema comparisons leave them out)."""
    found = _NAME.match(name)
    return bool(found and found["table"] in PARTITIONED)


def day_start(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def create_partition_sql(table: str, day: date) -> str:
    """DDL for ``day``'s partition of ``table`` (a no-op when it exists)."""
    start, end = day_start(day), day_start(day + timedelta(days=1))
    return (
        f"CREATE TABLE IF NOT EXISTS {partition_name(table, day)} PARTITION OF {table} "
        f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
    )


def days_between(first: date, last: date) -> Iterable[date]:
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)


async def lock(session: AsyncSession) -> None:
    """Serialise partition work across replicas until this transaction ends."""
    await locks.hold(session, "partitions")


@dataclass(frozen=True)
class Partition:
    name: str
    start: datetime
    end: datetime


async def partitions_of(session: AsyncSession, table: str) -> list[Partition]:
    """``table``'s partitions, read from the catalog (so every replica agrees, and ones made
    by hand or by a benchmark under other names count too), oldest first."""
    rows = await session.execute(
        text(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = CAST(:table AS regclass)"
        ),
        {"table": table},
    )
    found = []
    for name, bound in rows:
        values = _BOUND.match(bound or "")
        if values:  # a DEFAULT partition has no range
            start, end = (datetime.fromisoformat(v).astimezone(UTC) for v in values.groups())
            found.append(Partition(name, start, end))
    return sorted(found, key=lambda p: p.start)


async def partition_days(session: AsyncSession, table: str) -> set[date]:
    """The UTC days ``table``'s partitions cover whole."""
    days: set[date] = set()
    for part in await partitions_of(session, table):
        day = part.start.date()
        if day_start(day) < part.start:  # starts within a day: that day is not whole
            day += timedelta(days=1)
        while day_start(day + timedelta(days=1)) <= part.end:
            days.add(day)
            day += timedelta(days=1)
    return days


async def storable_days(session: AsyncSession) -> set[date]:
    """Days on which a sample and its 1-minute rollups both have a partition."""
    tables = [await partition_days(session, table) for table in PARTITIONED]
    return set.intersection(*tables)


async def make_ahead(session: AsyncSession, first: date, last: date) -> int:
    """Partitions for every day ``first`` … ``last`` of both tables; how many were new.

    ``first`` is the day raw retention reaches back to (a late sample within retention has
    its partition), ``last`` some days ahead. Idempotent, and safe on two replicas at once:
    the advisory lock serialises them, and each creates what the catalog still lacks once it
    holds the lock.
    """
    await lock(session)
    made = 0
    for table in PARTITIONED:
        have = await partition_days(session, table)
        for day in days_between(first, last):
            if day not in have:
                await session.execute(text(create_partition_sql(table, day)))
                made += 1
    return made


async def drop_before(session: AsyncSession, table: str, cutoff: datetime) -> int:
    """Drop ``table``'s partitions that end at or before ``cutoff``; how many."""
    await lock(session)
    dropped = 0
    for part in await partitions_of(session, table):
        if part.end <= cutoff:
            await session.execute(text(f'DROP TABLE IF EXISTS "{part.name}"'))
            dropped += 1
    return dropped


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    """Alembic's ``include_name`` hook: schema comparisons skip the daily partitions (their
    parent, in the models, stands for them)."""
    return not (type_ == "table" and name is not None and is_partition(name))
