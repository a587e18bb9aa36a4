"""DNSBL rows: what is watched (and when it is next due), the latest result per list, each
check's outcome (history), and delisting requests."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db.base import Base, IdMixin, TenantOwned

OPEN_REQUESTS = ("opened", "submitted")
OPEN_WHERE = text("state IN ('opened', 'submitted')")


class DnsblSubject(IdMixin, TenantOwned, Base):
    """An address (one assignment: ``ip_id``) or a mail domain (``domain_id``) looked up on
    the lists of its kind: its verdict and score, its slot, and the lease of the replica
    looking it up now."""

    __tablename__ = "dnsbl_subjects"
    __table_args__ = (
        UniqueConstraint("ip_id", name="uq_dnsbl_subjects_ip"),
        UniqueConstraint("domain_id", name="uq_dnsbl_subjects_domain"),
    )

    server_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("servers.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(8))  # ip, domain
    name: Mapped[str] = mapped_column(String(253))  # the address or the domain
    ip_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("ip_addresses.id", ondelete="CASCADE")
    )
    domain_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("mail_domains.id", ondelete="CASCADE")
    )
    listing: Mapped[str | None] = mapped_column(String(16))  # listed, clean, unknown
    score: Mapped[int | None] = mapped_column(Integer)
    checked_at: Mapped[datetime | None]
    next_run_at: Mapped[datetime] = mapped_column(index=True)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None]


class DnsblResult(IdMixin, TenantOwned, Base):
    """The latest result of one subject on one list (``zone``)."""

    __tablename__ = "dnsbl_results"
    __table_args__ = (UniqueConstraint("subject_id", "zone", name="uq_dnsbl_results_zone"),)

    subject_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("dnsbl_subjects.id", ondelete="CASCADE")
    )
    zone: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16))  # listed, clean, unknown
    code: Mapped[str | None] = mapped_column(String(200))
    meaning: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    checked_at: Mapped[datetime]
    changed_at: Mapped[datetime]


class DnsblCheck(IdMixin, TenantOwned, Base):
    """One check of a subject on all its lists: the verdict, the score, and which lists
    listed it or could not tell (JSON lists of zones; the others were clean)."""

    __tablename__ = "dnsbl_checks"
    __table_args__ = (Index("ix_dnsbl_checks_subject_at", "subject_id", "checked_at"),)

    subject_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("dnsbl_subjects.id", ondelete="CASCADE")
    )
    checked_at: Mapped[datetime] = mapped_column(index=True)
    listing: Mapped[str] = mapped_column(String(16))
    score: Mapped[int | None] = mapped_column(Integer)
    listed: Mapped[str] = mapped_column(Text, default="[]")
    unknown: Mapped[str] = mapped_column(Text, default="[]")


class DelistRequest(IdMixin, TenantOwned, Base):
    """A user's removal request for one address on one list: opened → submitted (the user
    says so) → rechecked every ``dnsbl_delist_recheck_seconds`` → cleared (the list no
    longer lists it) or stale (still listed after ``dnsbl_delist_stale_days``)."""

    __tablename__ = "dnsbl_delist_requests"
    __table_args__ = (
        Index(
            "uq_dnsbl_delist_requests_open",
            "ip_id",
            "zone",
            unique=True,
            postgresql_where=OPEN_WHERE,
            sqlite_where=OPEN_WHERE,
        ),
    )

    ip_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("ip_addresses.id", ondelete="CASCADE"), index=True
    )
    address: Mapped[str] = mapped_column(String(45))
    zone: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16))  # opened, submitted, cleared, stale
    opened_by: Mapped[str | None] = mapped_column(String(300))
    opened_at: Mapped[datetime]
    submitted_at: Mapped[datetime | None]
    next_check_at: Mapped[datetime | None] = mapped_column(index=True)
    last_checked_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    detail: Mapped[str] = mapped_column(Text, default="")
