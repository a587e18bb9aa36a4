"""Mail counts: what left each server per day, source address and sender domain.

The agent reads Postfix's log and reports whole-day totals; the control plane replaces a
day's rows with each report, so a report delivered twice (commands are at-least-once) or a
day re-read after more mail went out leaves one row per key with the latest totals.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import Boolean, Date, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db.base import Base, IdMixin, TenantOwned


class MailCount(IdMixin, TenantOwned, Base):
    """Outbound messages of one day (UTC) from ``source_ip`` with envelope senders in
    ``sender_domain``: delivered (``sent``), attempts that failed temporarily and stay queued
    (``deferred``, one per attempt), and permanent failures (``bounced``)."""

    __tablename__ = "mail_counts"
    __table_args__ = (
        UniqueConstraint(
            "server_id", "day", "source_ip", "sender_domain", name="uq_mail_counts_key"
        ),
        Index("ix_mail_counts_domain_day", "sender_domain", "day"),
    )

    server_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("servers.id", ondelete="CASCADE"))
    day: Mapped[date] = mapped_column(Date)
    source_ip: Mapped[str] = mapped_column(String(45))
    sender_domain: Mapped[str] = mapped_column(String(253))
    sent: Mapped[int] = mapped_column(Integer, default=0)
    deferred: Mapped[int] = mapped_column(Integer, default=0)
    bounced: Mapped[int] = mapped_column(Integer, default=0)


class MailStatsReport(TenantOwned, Base):
    """How the server's counts stand: when its agent last answered ``mail.stats`` and whether
    it found Postfix's log then, and the last failure. Without it, a day with no rows could be
    a quiet day or a log nobody reads; the API says which."""

    __tablename__ = "mail_stats_reports"

    server_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("servers.id", ondelete="CASCADE"), primary_key=True
    )
    reported_at: Mapped[datetime | None]
    log_found: Mapped[bool | None] = mapped_column(Boolean)
    lines_read: Mapped[int | None] = mapped_column(Integer)
    failed_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
