"""Usage tiers: rates and mail queue in raw samples, wider series names, hourly rollups, and
on PostgreSQL raw samples and 1-minute rollups range-partitioned by day.

Revision ID: 0020
Revises: 0019
Create Date: 2026-11-30
"""

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa
from alembic import op

from control_plane.db.base import UTCDateTime
from control_plane.db.rls import disable_tenant_rls, enable_tenant_rls
from control_plane.metrics.partitions import create_partition_sql, days_between
from control_plane.migrations.columns import reference

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RATES = (
    "net_rx_bytes_per_second",
    "net_tx_bytes_per_second",
    "disk_read_bytes_per_second",
    "disk_write_bytes_per_second",
)
PARTITIONED = {"metric_samples": "sampled_at", "metric_rollups_1m": "bucket"}
# Days before and after today that get partitions (the settings' defaults: raw retention,
# partitions ahead); serve's maintenance pass adjusts them to the settings after migrating.
BACK_DAYS, AHEAD_DAYS = 14, 7
OLD_METRIC_WIDTH = 32


def _postgres() -> bool:
    return bool(op.get_bind().dialect.name == "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("metric_samples") as batch:
        for name in RATES:
            batch.add_column(sa.Column(name, sa.Float(), nullable=True))
        batch.add_column(sa.Column("mail_queue_messages", sa.Integer(), nullable=True))
    with op.batch_alter_table("metric_rollups_1m") as batch:
        batch.alter_column(
            "metric", type_=sa.String(300), existing_type=sa.String(OLD_METRIC_WIDTH)
        )
    op.create_table(
        "metric_rollups_1h",
        reference("server_id", "servers", index=False),
        sa.Column("metric", sa.String(300), nullable=False),
        sa.Column("bucket", UTCDateTime(), nullable=False),
        reference("tenant_id", "tenants"),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("sum", sa.Float(), nullable=False),
        sa.Column("min", sa.Float(), nullable=False),
        sa.Column("max", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("server_id", "metric", "bucket"),
    )
    if _postgres():
        _cover_hourly()
    enable_tenant_rls("metric_rollups_1h")
    # The hour of each minute, in UTC (SQLite stores SQLAlchemy's "YYYY-MM-DD HH:MM:SS.ffffff").
    hour = (
        "date_trunc('hour', bucket AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
        if _postgres()
        else "strftime('%Y-%m-%d %H:00:00.000000', bucket)"
    )
    columns = "server_id, metric, bucket, tenant_id, count, sum, min, max"
    op.execute(  # constants only: no outside text reaches these statements
        f"INSERT INTO metric_rollups_1h ({columns}) "  # noqa: S608
        f"SELECT server_id, metric, {hour}, tenant_id, SUM(count), SUM(sum), MIN(min), MAX(max) "
        f"FROM metric_rollups_1m GROUP BY server_id, tenant_id, metric, {hour}"
    )
    if _postgres():
        for table, key in PARTITIONED.items():
            _rebuild(table, key, partitioned=True)


def downgrade() -> None:
    if _postgres():
        for table, key in PARTITIONED.items():
            _rebuild(table, key, partitioned=False)
    disable_tenant_rls("metric_rollups_1h")
    op.drop_table("metric_rollups_1h")
    # Series names longer than the old column (filesystem series, new with 0020) go.
    op.execute(f"DELETE FROM metric_rollups_1m WHERE length(metric) > {OLD_METRIC_WIDTH}")  # noqa: S608
    with op.batch_alter_table("metric_rollups_1m") as batch:
        batch.alter_column(
            "metric", type_=sa.String(OLD_METRIC_WIDTH), existing_type=sa.String(300)
        )
    with op.batch_alter_table("metric_samples") as batch:
        for name in (*RATES, "mail_queue_messages"):
            batch.drop_column(name)


def _cover_hourly() -> None:
    """The hourly key carries the figures (INCLUDE), and autovacuum visits the table after
    every 10,000 new rows (not after 20 % more, months on a two-year table), so its pages are
    marked all-visible: a 90-day read is then an index-only scan, one server's rows packed in
    the key's order, instead of a heap fetch per row from pages spread over every server's
    hours (benchmarks/usage_query.py). SQLAlchemy cannot declare INCLUDE on a primary key."""
    op.execute(
        "ALTER TABLE metric_rollups_1h DROP CONSTRAINT pk_metric_rollups_1h, "
        "ADD CONSTRAINT pk_metric_rollups_1h PRIMARY KEY (server_id, metric, bucket) "
        "INCLUDE (count, sum, min, max)"
    )
    op.execute(
        "ALTER TABLE metric_rollups_1h SET (autovacuum_vacuum_insert_threshold = 10000, "
        "autovacuum_vacuum_insert_scale_factor = 0)"
    )


def _rebuild(table: str, key: str, *, partitioned: bool) -> None:
    """Replace ``table`` by a copy (range-partitioned by day on ``key``, or plain) holding
    the same rows, constraints (keys, ON DELETE CASCADE references), indexes, row-level
    security policy and grants. PostgreSQL cannot turn a table into a partitioned one in
    place, hence the copy."""
    bind = op.get_bind()
    regclass = {"table": table}
    constraints = bind.execute(
        sa.text(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = CAST(:table AS regclass) AND contype IN ('p', 'u', 'f', 'c', 'x') "
            "ORDER BY contype <> 'p', conname"
        ),
        regclass,
    ).all()
    indexes = bind.execute(
        sa.text(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() "
            "AND tablename = :table AND indexname NOT IN "
            "(SELECT conname FROM pg_constraint WHERE conrelid = CAST(:table AS regclass))"
        ),
        regclass,
    ).scalars()
    index_definitions = list(indexes)
    span = sa.text(f"SELECT MIN({key}), MAX({key}) FROM {table}")  # noqa: S608
    oldest, newest = bind.execute(span).one()
    op.execute(f"ALTER TABLE {table} RENAME TO {table}_old")
    op.execute(
        f"CREATE TABLE {table} (LIKE {table}_old INCLUDING DEFAULTS)"
        + (f" PARTITION BY RANGE ({key})" if partitioned else "")
    )
    if partitioned:
        today = datetime.now(UTC).date()
        last = max(today + timedelta(days=AHEAD_DAYS), _day(newest, today))
        first = min(today - timedelta(days=BACK_DAYS), _day(oldest, today))
        for day in days_between(first, last):
            op.execute(create_partition_sql(table, day))
    op.execute(f"INSERT INTO {table} SELECT * FROM {table}_old")  # noqa: S608
    op.execute(f"DROP TABLE {table}_old")  # with its partitions, policy, grants and indexes
    for name, definition in constraints:
        op.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
    for definition in index_definitions:
        op.execute(definition)
    enable_tenant_rls(table)


def _day(at: datetime | None, default: date) -> date:
    return at.astimezone(UTC).date() if at is not None else default
