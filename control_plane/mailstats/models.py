"""Mail counts: what left each server per day, source address and sender domain.

The agent reads Postfix's log and reports whole-day totals; the control plane replaces a
day's rows with each report, so a report delivered twice (commands are at-least-once) or a
day re-read after more mail went out leaves one row per key with the latest totals.
"""

from __future__ import annotations

import uuid
from datetime import date

from sqlalchemy import Date, ForeignKey, Index, Integer, String, UniqueConstraint
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
