"""Reading a server's series back at a step, from the tier that holds it (the contract).

Steps and tiers: ``raw`` reads ``metric_samples`` (14 days); ``1m``, ``5m``, ``15m`` merge
``metric_rollups_1m`` (90 days); ``1h`` and ``1d`` merge ``metric_rollups_1h`` (2 years).

Speed: SQLAlchemy Core selecting plain columns (no ORM objects, no per-row type decorator);
a step wider than its tier's rows is bucketed in SQL (GROUP BY the UTC-aligned epoch), so a
day of hourly rows crosses the wire as one row. The series of a server are found first by a
skip scan over the primary key (server_id, metric, bucket), and the rows are then read with
``metric IN (…)``: the index is walked once per series over just the range asked for,
instead of over every row the server ever had (benchmarks/usage_query.py measures it).
On PostgreSQL each series comes back as arrays, kept as numpy columns (``Series``): no
Python object per bucket.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, get_args

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Float,
    Integer,
    Uuid,
    bindparam,
    cast,
    func,
    select,
    text,
)
from sqlalchemy import column as sql_column
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.base import utcnow
from control_plane.errors import InvalidInput
from control_plane.metrics.models import MetricRollup, MetricRollupHourly, MetricSample
from control_plane.metrics.retention import Retention
from control_plane.metrics.series import GAUGES, sample_series, split_series

# numpy is imported inside the functions that compute: serve and the CLI start without it.
if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Floats = npt.NDArray[np.float64]
    Ints = npt.NDArray[np.int64]

UsageStep = Literal["raw", "1m", "5m", "15m", "1h", "1d"]
STEPS: tuple[UsageStep, ...] = get_args(UsageStep)
Tier = Literal["raw", "1m", "1h"]
# Seconds per step (raw: none) and the tier each step reads.
STEP_SECONDS: dict[UsageStep, int] = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "1d": 86_400}
STEP_TIER: dict[UsageStep, Tier] = {
    "raw": "raw",
    "1m": "1m",
    "5m": "1m",
    "15m": "1m",
    "1h": "1h",
    "1d": "1h",
}
TIER_SECONDS: dict[Tier, int] = {"1m": 60, "1h": 3600}
# Points per series one query may return (Prometheus refuses more than 11,000 too).
MAX_POINTS = 11_000
# A range that starts this little before a tier's horizon is still served (clocks, rounding).
REACH_SLACK = timedelta(hours=1)


class Point(NamedTuple):
    """One bucket of one series (for ``raw``: one sample, count 1, avg = min = max).

    A named tuple, not a dataclass: a 90-day answer makes ~40,000 of them, and a tuple is
    built in C (a frozen dataclass's __init__ took 3 µs each, most of the read's time)."""

    t: datetime
    avg: float
    min: float
    max: float
    count: int  # type: ignore[assignment]  # (tuple.count: unused here)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
US = 1_000_000  # microseconds a second


@dataclass(frozen=True, slots=True, eq=False)
class Series:
    """One series' buckets as columns, oldest first: ``t`` in epoch seconds (UTC).

    Columns, not a Point per bucket: a 90-day answer has ~40,000 buckets, and making a tuple
    and a datetime for each was most of the read; the per-cent series, summaries and JSON
    work on the arrays. Indexing or iterating still gives Points (tests, exports)."""

    t: Ints  # microseconds since 1970 (UTC): a raw sample's time keeps its fraction
    avg: Floats
    min: Floats
    max: Floats
    count: Ints

    @classmethod
    def of(cls, t: Any, avg: Any, low: Any, high: Any, count: Any) -> Series:
        """From sequences (lists, arrays) of equal length."""
        import numpy as np

        return cls(
            np.asarray(t, np.int64),
            np.asarray(avg, np.float64),
            np.asarray(low, np.float64),
            np.asarray(high, np.float64),
            np.asarray(count, np.int64),
        )

    @classmethod
    def of_points(cls, points: Collection[Point]) -> Series:
        """From Points (their times aware)."""
        if not points:
            return cls.of([], [], [], [], [])
        times, avg, low, high, count = zip(*points, strict=True)
        at = [(t - EPOCH) // timedelta(microseconds=1) for t in times]
        return cls.of(at, avg, low, high, count)

    def take(self, keep: npt.NDArray[np.bool_]) -> Series:
        """The buckets where ``keep`` is true."""
        t, avg, low, high, count = self.t, self.avg, self.min, self.max, self.count
        return Series(t[keep], avg[keep], low[keep], high[keep], count[keep])

    def times(self) -> list[datetime]:
        return [EPOCH + timedelta(microseconds=t) for t in self.t.tolist()]

    def __len__(self) -> int:
        return len(self.t)

    def __getitem__(self, i: int) -> Point:
        return Point(
            EPOCH + timedelta(microseconds=int(self.t[i])),
            float(self.avg[i]),
            float(self.min[i]),
            float(self.max[i]),
            int(self.count[i]),
        )

    def __iter__(self) -> Iterator[Point]:
        columns = (self.avg.tolist(), self.min.tolist(), self.max.tolist(), self.count.tolist())
        return map(Point, self.times(), *columns)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Series | list | tuple):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


# How far back each tier holds data: its retention setting (the retention job's own figures).
TierReach = Retention


def check_range(
    start: datetime, end: datetime, step: UsageStep, reach: TierReach, now: datetime
) -> None:
    """InvalidInput naming the field when ``step`` cannot serve [start, end)."""
    if start >= end:
        raise InvalidInput("from must be before to", field="query.from")
    tier = STEP_TIER[step]
    horizon = reach.of_tier(tier)
    if start < now - horizon - REACH_SLACK:
        kept = f"{horizon.total_seconds() / 86_400:g} days"
        raise InvalidInput(
            f"step {step} reads the {tier} tier, which keeps {kept}: "
            f"use a wider step or a later from",
            field="query.from" if tier == "1h" else "query.step",  # no wider tier
        )
    if step != "raw":
        points = (end - start).total_seconds() / STEP_SECONDS[step]
        if points > MAX_POINTS:
            raise InvalidInput(
                f"{points:.0f} points per series at step {step} (at most {MAX_POINTS}): "
                "use a wider step or a shorter range",
                field="query.step",
            )


async def read_series(
    session: AsyncSession,
    server_id: uuid.UUID,
    start: datetime,
    end: datetime,
    step: UsageStep,
    names: Collection[str] | None = None,
    *,
    reach: TierReach,
) -> dict[str, Series]:
    """Series name → its points in [start, end) at ``step``, oldest first (``names``: only
    those series; None: all). Raises InvalidInput (field ``query.step``/``query.from``)
    when the tier for ``step`` does not reach back to ``start``, or the answer would hold
    more than MAX_POINTS points per series. Buckets are aligned to UTC (a ``1d`` point is a
    UTC day) and start at ``start`` floored to the step."""
    if step not in STEP_TIER:
        raise InvalidInput(f"step must be one of {', '.join(STEPS)}", field="query.step")
    check_range(start, end, step, reach, utcnow())
    if names is not None and not names:
        return {}
    if step == "raw":
        return await _raw(session, server_id, start, end, names)
    return await _rolled_up(session, server_id, start, end, step, names)


async def _raw(
    session: AsyncSession,
    server_id: uuid.UUID,
    start: datetime,
    end: datetime,
    names: Collection[str] | None,
) -> dict[str, Series]:
    import numpy as np

    wanted = set(names) if names is not None else None
    gauges = [g for g in GAUGES if wanted is None or g in wanted]
    with_fs = wanted is None or any(split_series(n)[1] is not None for n in wanted)
    columns: list[Any] = [MetricSample.sampled_at, *(getattr(MetricSample, g) for g in gauges)]
    if with_fs:
        columns.append(MetricSample.filesystems)
    stmt = (
        select(*columns)
        .where(
            MetricSample.server_id == server_id,
            MetricSample.sampled_at >= start,
            MetricSample.sampled_at < end,
        )
        .order_by(MetricSample.sampled_at)
        .limit(MAX_POINTS + 1)
    )
    rows = (await session.execute(stmt)).mappings().all()
    if len(rows) > MAX_POINTS:
        raise InvalidInput(
            f"more than {MAX_POINTS} raw samples in range: use a step or a shorter range",
            field="query.step",
        )
    found: dict[str, tuple[list[int], list[float]]] = {}
    for row in rows:
        at = (row["sampled_at"] - EPOCH) // timedelta(microseconds=1)
        for name, value in sample_series(dict(row)).items():
            if wanted is None or name in wanted:
                times, values = found.setdefault(name, ([], []))
                times.append(at)
                values.append(value)
    return {n: Series.of(t, v, v, v, np.ones(len(t))) for n, (t, v) in found.items()}


def _epoch(dialect: str, at: Any) -> ColumnElement[Any]:
    """Whole seconds since 1970 (UTC) of a timestamp column, on either database."""
    if dialect == "postgresql":
        return cast(func.extract("epoch", at), BigInteger)
    # SQLite keeps the UTC time as text; strftime('%s') reads it as UTC.
    return cast(func.strftime("%s", at), Integer)


# The series a server has in a rollup table, by a loose index scan: one probe of the primary
# key (server_id, metric, bucket) per series, where DISTINCT reads every row the server has
# (17,520 a series over two years). Table names: one of two model constants, never input.
SERIES_NAMES = """
    WITH RECURSIVE names(metric) AS (
        SELECT (SELECT metric FROM {table} WHERE server_id = :server ORDER BY metric LIMIT 1)
        UNION ALL
        SELECT (SELECT t.metric FROM {table} t
                WHERE t.server_id = :server AND t.metric > names.metric
                ORDER BY t.metric LIMIT 1)
        FROM names WHERE names.metric IS NOT NULL
    )
    SELECT metric FROM names WHERE metric IS NOT NULL
"""


async def _series_names(session: AsyncSession, table: str, server_id: uuid.UUID) -> list[str]:
    stmt = text(SERIES_NAMES.format(table=table)).bindparams(bindparam("server", type_=Uuid()))
    return list((await session.scalars(stmt, {"server": server_id})).all())


async def _rolled_up(
    session: AsyncSession,
    server_id: uuid.UUID,
    start: datetime,
    end: datetime,
    step: UsageStep,
    names: Collection[str] | None,
) -> dict[str, Series]:
    tier = STEP_TIER[step]
    model = MetricRollup if tier == "1m" else MetricRollupHourly
    table = model.__table__
    width = STEP_SECONDS[step]
    dialect = session.get_bind().dialect.name
    wanted = sorted(names) if names is not None else None
    if wanted is None:
        wanted = await _series_names(session, model.__tablename__, server_id)
        if not wanted:
            return {}
    first = _floor(start, width)
    grouped = width != TIER_SECONDS[tier]
    if dialect == "postgresql":
        rows_sql = (GROUPED_ROWS if grouped else ROWS).format(table=model.__tablename__)
        params = {"names": wanted, "server": server_id, "first": first, "end": end}
        return await _as_arrays(session, ARRAYS.format(rows=rows_sql), params, width, grouped)
    where = (
        table.c.server_id == server_id,
        table.c.metric.in_(wanted),
        table.c.bucket >= first,
        table.c.bucket < end,
    )
    epoch = _epoch(dialect, table.c.bucket)
    bucket: ColumnElement[Any] = sql_column("b")
    if not grouped:  # one stored row per point
        stmt = select(
            table.c.metric, epoch.label("b"), table.c.count, table.c.sum, table.c.min, table.c.max
        ).where(*where)
    else:
        stmt = (
            select(
                table.c.metric,
                ((epoch // width) * width).label("b"),
                cast(func.sum(table.c.count), BigInteger),
                cast(func.sum(table.c.sum), Float),
                func.min(table.c.min),
                func.max(table.c.max),
            )
            .where(*where)
            .group_by(table.c.metric, bucket)
        )
    result = (await session.execute(stmt.order_by(table.c.metric, bucket))).all()  # fetchall
    found: dict[str, list[tuple[int, float, float, float, int]]] = {}
    for name, at, count, total, low, high in result:
        found.setdefault(name, []).append((at * US, total / count, low, high, count))
    return {name: Series.of(*zip(*rows, strict=True)) for name, rows in found.items()}


# PostgreSQL: per series (LATERAL) an index-only range scan (the key INCLUDEs the figures),
# read in bucket order, aggregated into arrays: no sort (ORDER BY the column, not its epoch:
# the index gives the order), and 15 rows cross the wire rather than 32,000
# (asyncpg decodes an array in C; a Row object per bucket cost more than the whole query).
ARRAYS = """
    SELECT m.name, a.b, a.avg, a.low, a.high, a.n
    FROM unnest(CAST(:names AS text[])) AS m(name)
    CROSS JOIN LATERAL (
        SELECT array_agg(r.b) AS b, array_agg(r.total / r.n) AS avg, array_agg(r.low) AS low,
               array_agg(r.high) AS high, array_agg(r.n) AS n
        FROM ({rows}) AS r
    ) AS a
    WHERE a.b IS NOT NULL
"""
ROWS = """
    SELECT CAST(extract(epoch FROM bucket) AS bigint) AS b, count AS n, sum AS total,
           min AS low, max AS high
    FROM {table}
    WHERE server_id = :server AND metric = m.name AND bucket >= :first AND bucket < :end
    ORDER BY bucket
"""
GROUPED_ROWS = """
    SELECT CAST(extract(epoch FROM bucket) AS bigint) / :width * :width AS b,
           CAST(sum(count) AS bigint) AS n, sum(sum) AS total, min(min) AS low,
           max(max) AS high
    FROM {table}
    WHERE server_id = :server AND metric = m.name AND bucket >= :first AND bucket < :end
    GROUP BY 1 ORDER BY 1
"""


async def _as_arrays(
    session: AsyncSession, sql: str, params: dict[str, Any], width: int, grouped: bool
) -> dict[str, Series]:
    import numpy as np

    if grouped:
        params["width"] = width
    return {
        name: Series.of(np.asarray(epochs, np.int64) * US, avgs, lows, highs, counts)
        for name, epochs, avgs, lows, highs, counts in await session.execute(text(sql), params)
    }


def _floor(at: datetime, seconds: int) -> datetime:
    epoch = int(at.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, UTC)
