"""One row per (address, assignment): the address's life on one server, and its history.

An address released and later given to another server (or tenant) starts a new row, so no
tenant ever sees another's history. Role, warmup, pause and listing are separate columns
because an address can be warming, listed and paused at once.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import Boolean, Date, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db.base import Base, IdMixin, TenantOwned, TimestampMixin

ROLES = ("sending", "standby", "retired")
LIVE_WHERE = text("released_at IS NULL")


class IpAddress(IdMixin, TimestampMixin, TenantOwned, Base):
    """An IPv4 address while it is assigned to a server (``released_at`` ends the row).

    ``dns_published``: the server's A record and SPF carry it (the sending address always;
    during an IP switch both; the old one until its grace period ends).
    ``warmup_*``: the plan (``standard``/``conservative``/``aggressive``/``custom``), its
    first day, the daily caps of a custom plan (JSON list), a cap set for one day only, and
    when the plan finished. ``paused_*``: why sending from it is held, and who held it
    (``auto`` or the key's name). ``listing``: the DNSBL verdict (listed/clean/unknown, NULL
    before the first check) and its 0-100 ``score`` (100 = clean everywhere).
    """

    __tablename__ = "ip_addresses"
    __table_args__ = (
        Index(
            "uq_ip_addresses_live",
            "address",
            unique=True,
            postgresql_where=LIVE_WHERE,
            sqlite_where=LIVE_WHERE,
        ),
    )

    server_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("servers.id", ondelete="CASCADE"), index=True
    )
    address: Mapped[str] = mapped_column(String(45))
    provider: Mapped[str] = mapped_column(String(32))
    is_main: Mapped[bool] = mapped_column(Boolean, default=False)
    ptr: Mapped[str | None] = mapped_column(String(253))
    role: Mapped[str] = mapped_column(String(16), default="standby")
    dns_published: Mapped[bool] = mapped_column(Boolean, default=False)
    warmup_plan: Mapped[str | None] = mapped_column(String(16))
    warmup_start: Mapped[date | None] = mapped_column(Date)
    warmup_caps: Mapped[str | None] = mapped_column(Text)
    warmup_today_cap: Mapped[int | None] = mapped_column(Integer)
    warmup_today_cap_day: Mapped[date | None] = mapped_column(Date)
    warmup_done_at: Mapped[datetime | None]
    paused_at: Mapped[datetime | None]
    paused_reason: Mapped[str | None] = mapped_column(Text)
    paused_by: Mapped[str | None] = mapped_column(String(300))
    listing: Mapped[str | None] = mapped_column(String(16))
    score: Mapped[int | None] = mapped_column(Integer)
    listing_checked_at: Mapped[datetime | None]
    assigned_at: Mapped[datetime]
    released_at: Mapped[datetime | None]


class IpEvent(IdMixin, TenantOwned, Base):
    """A change of an address: assigned, role, ptr, warmup, paused, resumed, listing,
    switch, released — ``detail`` says what, ``actor`` who (a key's name, ``auto``, or the
    control plane)."""

    __tablename__ = "ip_events"
    __table_args__ = (Index("ix_ip_events_ip_at", "ip_id", "at"),)

    ip_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("ip_addresses.id", ondelete="CASCADE"))
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(24))
    detail: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str | None] = mapped_column(String(300))
