"""The price catalog, the metering ledger, budgets and imported provider invoices.

The ledger (``meter_spans``, ``meter_readings``) references servers and workspaces by id
only, with no foreign key: deleting a server or a workspace deletes their rows, never what
they were billed for. Amounts are ``Money`` (exact decimals), never floats.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db.base import Base, IdMixin, Money, TenantOwned, TimestampMixin, utcnow

RATE_SCALE = 6  # prices and unrounded amounts keep 6 decimal places; reports round to cents


class Price(IdMixin, Base):
    """One price of the catalog for a period: ``effective_to`` NULL is the current one.

    ``kind`` ``plan``: ``item`` is the plan id, ``amount`` per month, ``included_gb`` its
    monthly bandwidth allowance (NULL: unmetered). ``ip``: per extra address-month.
    ``backup_storage``: ``item`` the repository kind (s3, b2, sftp, rest, local…), per
    GB-month. ``bandwidth``: per GB beyond the plan's allowance. ``provider`` ``*`` applies
    to every provider without its own price.
    """

    __tablename__ = "prices"
    __table_args__ = (
        UniqueConstraint(
            "provider", "kind", "item", "effective_from", name="uq_prices_provider_kind_item_from"
        ),
        Index("ix_prices_lookup", "provider", "kind", "item", "effective_from"),
    )

    provider: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(24))
    item: Mapped[str] = mapped_column(String(64), default="")
    currency: Mapped[str] = mapped_column(String(3))
    amount: Mapped[Decimal] = mapped_column(Money(RATE_SCALE))
    included_gb: Mapped[int | None] = mapped_column(Integer)
    effective_from: Mapped[datetime]
    effective_to: Mapped[datetime | None]
    source: Mapped[str] = mapped_column(String(16))  # provider | setting | admin
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class MeterSpan(IdMixin, TenantOwned, Base):
    """A period something billed by the hour was held: ``resource`` ``server`` (``item``
    the plan) or ``ip`` (``item`` the address). ``ended_at`` NULL: still held. Opened when
    the server is ordered or the address assigned; a resize ends one plan's span and starts
    the next; deprovisioning or releasing ends it."""

    __tablename__ = "meter_spans"
    __table_args__ = (
        Index("ix_meter_spans_tenant_time", "tenant_id", "started_at", "ended_at"),
        Index("ix_meter_spans_server", "server_id", "resource"),
    )

    server_id: Mapped[uuid.UUID]  # no foreign key: the ledger outlives the server
    server_name: Mapped[str] = mapped_column(String(200))
    workspace_id: Mapped[uuid.UUID | None]  # the server's owner then; NULL: shared
    provider: Mapped[str] = mapped_column(String(32))
    resource: Mapped[str] = mapped_column(String(16))
    item: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]


class MeterReading(IdMixin, TenantOwned, Base):
    """A day's quantity for one server: ``backup_storage`` (bytes in the repository, item
    its kind), ``bandwidth`` (bytes sent that day), and a shared server's split weights
    ``share_domains`` / ``share_mailboxes`` / ``share_storage`` (item: the workspace id, ''
    for domains of no workspace). One row per (server, resource, item, day): a late or
    corrected fact replaces it, and rating that day again gives the new amount."""

    __tablename__ = "meter_readings"
    __table_args__ = (
        UniqueConstraint(
            "server_id", "resource", "item", "day", name="uq_meter_readings_server_resource_day"
        ),
        Index("ix_meter_readings_tenant_day", "tenant_id", "day"),
    )

    server_id: Mapped[uuid.UUID]
    server_name: Mapped[str] = mapped_column(String(200))
    workspace_id: Mapped[uuid.UUID | None]
    provider: Mapped[str] = mapped_column(String(32))
    resource: Mapped[str] = mapped_column(String(24))
    item: Mapped[str] = mapped_column(String(64), default="")
    day: Mapped[date] = mapped_column(Date)
    quantity: Mapped[int] = mapped_column(BigInteger)
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)


WORKSPACE_SET = text("workspace_id IS NOT NULL")
TENANT_WIDE = text("workspace_id IS NULL")


class Budget(IdMixin, TimestampMixin, TenantOwned, Base):
    """A monthly amount for a workspace (or, ``workspace_id`` NULL, the whole tenant);
    alerts at each of ``thresholds`` (percent, comma separated) of actual and forecast."""

    __tablename__ = "budgets"
    __table_args__ = (  # one budget per workspace, one per tenant (two requests at once: 409)
        Index("uq_budgets_workspace", "workspace_id", unique=True,
              postgresql_where=WORKSPACE_SET, sqlite_where=WORKSPACE_SET),
        Index("uq_budgets_tenant", "tenant_id", unique=True,
              postgresql_where=TENANT_WIDE, sqlite_where=TENANT_WIDE),
    )  # fmt: skip

    workspace_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200), default="")
    amount: Mapped[Decimal] = mapped_column(Money())
    currency: Mapped[str] = mapped_column(String(3))
    thresholds: Mapped[str] = mapped_column(String(100), default="80,100,120")


class BudgetAlert(IdMixin, TenantOwned, Base):
    """A threshold crossed in a month: at most one per (budget, month, basis, threshold)."""

    __tablename__ = "budget_alerts"
    __table_args__ = (
        UniqueConstraint("budget_id", "month", "basis", "threshold", name="uq_budget_alerts_once"),
    )

    budget_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("budgets.id", ondelete="CASCADE"), index=True
    )
    month: Mapped[str] = mapped_column(String(7))  # YYYY-MM
    basis: Mapped[str] = mapped_column(String(8))  # actual | forecast
    threshold: Mapped[int] = mapped_column(Integer)
    amount: Mapped[Decimal] = mapped_column(Money())  # actual or forecast when it fired
    fired_at: Mapped[datetime]


class ProviderInvoice(IdMixin, TimestampMixin, Base):
    """A provider's invoice as imported (CSV) by an admin, for one billing period."""

    __tablename__ = "provider_invoices"

    provider: Mapped[str] = mapped_column(String(32))
    reference: Mapped[str] = mapped_column(String(100))
    period_start: Mapped[date] = mapped_column(Date)
    period_end: Mapped[date] = mapped_column(Date)  # exclusive
    currency: Mapped[str] = mapped_column(String(3))
    total: Mapped[Decimal] = mapped_column(Money())
    tolerance_percent: Mapped[Decimal] = mapped_column(Money())
    imported_by: Mapped[str | None] = mapped_column(String(300))


class InvoiceLine(IdMixin, Base):
    """One invoiced amount, matched to a server by instance id where one matches, with
    MailFleet's own figure for the same server and period and the difference."""

    __tablename__ = "provider_invoice_lines"

    invoice_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("provider_invoices.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer)
    instance_id: Mapped[str] = mapped_column(String(128), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    invoiced: Mapped[Decimal] = mapped_column(Money())
    tenant_id: Mapped[uuid.UUID | None]
    server_id: Mapped[uuid.UUID | None]
    expected: Mapped[Decimal | None] = mapped_column(Money())
    variance: Mapped[Decimal | None] = mapped_column(Money())
    flagged: Mapped[bool] = mapped_column(Boolean, default=False)
