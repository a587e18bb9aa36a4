from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db.base import Base, TenantOwned


class MetricSample(TenantOwned, Base):
    """One agent sample. (server_id, sampled_at) is the key, so a re-sent batch adds nothing."""

    __tablename__ = "metric_samples"

    server_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("servers.id", ondelete="CASCADE"), primary_key=True
    )
    sampled_at: Mapped[datetime] = mapped_column(primary_key=True)
    batch_sequence: Mapped[int] = mapped_column(BigInteger)
    cpu_percent: Mapped[float] = mapped_column(Float)
    load1: Mapped[float] = mapped_column(Float)
    load5: Mapped[float] = mapped_column(Float)
    load15: Mapped[float] = mapped_column(Float)
    memory_total_bytes: Mapped[int] = mapped_column(BigInteger)
    memory_used_bytes: Mapped[int] = mapped_column(BigInteger)
    memory_available_bytes: Mapped[int] = mapped_column(BigInteger)
    swap_total_bytes: Mapped[int] = mapped_column(BigInteger)
    swap_used_bytes: Mapped[int] = mapped_column(BigInteger)
    disk_read_bytes: Mapped[int] = mapped_column(BigInteger)
    disk_write_bytes: Mapped[int] = mapped_column(BigInteger)
    net_rx_bytes: Mapped[int] = mapped_column(BigInteger)
    net_tx_bytes: Mapped[int] = mapped_column(BigInteger)
    process_count: Mapped[int] = mapped_column(Integer)
    filesystems: Mapped[str] = mapped_column(Text, default="[]")
    # Rates over the time since the agent's previous sample (None on its first sample) and
    # MailU's queue length (None where no MailU queue is on the VPS): migration 0020.
    net_rx_bytes_per_second: Mapped[float | None] = mapped_column(Float)
    net_tx_bytes_per_second: Mapped[float | None] = mapped_column(Float)
    disk_read_bytes_per_second: Mapped[float | None] = mapped_column(Float)
    disk_write_bytes_per_second: Mapped[float | None] = mapped_column(Float)
    mail_queue_messages: Mapped[int | None] = mapped_column(Integer)


class MetricRollup(TenantOwned, Base):
    """avg/min/max/count of one series over one minute (avg = sum / count).

    ``metric`` is a series name from ``control_plane.metrics.series`` (``cpu_percent``,
    ``fs_used_bytes:/var``…). On PostgreSQL the table is range-partitioned by ``bucket``
    (one partition per day, ``metrics/partitions.py``); SQLite keeps a plain table.
    """

    __tablename__ = "metric_rollups_1m"

    server_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("servers.id", ondelete="CASCADE"), primary_key=True
    )
    metric: Mapped[str] = mapped_column(String(300), primary_key=True)
    bucket: Mapped[datetime] = mapped_column(primary_key=True)
    count: Mapped[int] = mapped_column(Integer)
    sum: Mapped[float] = mapped_column(Float)
    min: Mapped[float] = mapped_column(Float)
    max: Mapped[float] = mapped_column(Float)


class MetricRollupHourly(TenantOwned, Base):
    """The same figures over one hour, kept two years (plain table on both databases).

    On PostgreSQL the primary key INCLUDEs count, sum, min and max, so a range read is an
    index-only scan (migration 0020; SQLAlchemy cannot declare INCLUDE on a primary key)."""

    __tablename__ = "metric_rollups_1h"

    server_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("servers.id", ondelete="CASCADE"), primary_key=True
    )
    metric: Mapped[str] = mapped_column(String(300), primary_key=True)
    bucket: Mapped[datetime] = mapped_column(primary_key=True)
    count: Mapped[int] = mapped_column(Integer)
    sum: Mapped[float] = mapped_column(Float)
    min: Mapped[float] = mapped_column(Float)
    max: Mapped[float] = mapped_column(Float)
