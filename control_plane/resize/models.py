"""A server resize and its steps: the durable record a replica resumes from after a crash.

A resize is ``running`` (steps forward), ``rolling_back`` (the provider's resize is being
reverted), then ``succeeded`` or ``failed`` (``error`` says why, and whether the revert
itself failed). The row keeps both plans with their prices, so it is also the server's plan
history. ``next_run_at``/lease columns as in ``control_plane.workflows.runner``.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db.base import Base, IdMixin, Money, TenantOwned, TimestampMixin
from control_plane.workflows.steps import ACTIVE_WHERE, StepColumns, WorkflowColumns

STATES = ("running", "rolling_back", "succeeded", "failed")


class ServerResize(IdMixin, TimestampMixin, TenantOwned, WorkflowColumns, Base):
    """One request to move a server from ``from_plan`` to ``to_plan``."""

    __tablename__ = "server_resizes"
    __table_args__ = (
        Index(
            "uq_server_resizes_active_server",
            "server_id",
            unique=True,
            postgresql_where=ACTIVE_WHERE,
            sqlite_where=ACTIVE_WHERE,
        ),
        Index("ix_server_resizes_next_run_at", "next_run_at"),
    )

    server_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("servers.id", ondelete="CASCADE"), index=True
    )
    provider: Mapped[str] = mapped_column(String(32))
    from_plan: Mapped[str] = mapped_column(String(64))
    to_plan: Mapped[str] = mapped_column(String(64))
    from_price: Mapped[Decimal] = mapped_column(Money())
    to_price: Mapped[Decimal] = mapped_column(Money())
    currency: Mapped[str] = mapped_column(String(3))
    to_vcpus: Mapped[int] = mapped_column(Integer)
    to_memory_mb: Mapped[int] = mapped_column(Integer)
    requested_by: Mapped[str | None] = mapped_column(String(300))


class ServerResizeStep(IdMixin, TenantOwned, StepColumns, Base):
    """One step of a resize, in ``position`` order, with what it did (``detail``)."""

    __tablename__ = "server_resize_steps"
    __table_args__ = (
        Index("uq_server_resize_steps_position", "resize_id", "position", unique=True),
    )

    resize_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("server_resizes.id", ondelete="CASCADE")
    )
