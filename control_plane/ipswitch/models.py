"""An IP switch and its steps: the durable record a replica resumes from after a crash.

``next_run_at`` says when a replica should look at the switch again (NULL: nothing left to
do); ``lease_owner``/``lease_expires_at`` say which replica is working on it now. A switch
is ``running`` (steps forward), ``rolling_back`` (undoing, last first, from
``rollback_position`` down), then ``succeeded``, ``rolled_back`` or ``failed`` (a rollback
step itself failed: ``error`` says what is left). A succeeded switch keeps a trailing
``withdraw`` step, due after the DNS grace period.

``previous_snat``/``snat_ports``: the SNAT the agent reported before the switch (what the
undo of the ``snat`` step restores); ``previous_ptr``: the new address's PTR before the
switch; ``to_was_published``: the new address was already in DNS (its undo keeps it there).
"""

from __future__ import annotations

import uuid

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db.base import Base, IdMixin, TenantOwned, TimestampMixin
from control_plane.workflows.steps import ACTIVE_WHERE, StepColumns, WorkflowColumns

STATES = ("running", "rolling_back", "succeeded", "rolled_back", "failed")


class IpSwitch(IdMixin, TimestampMixin, TenantOwned, WorkflowColumns, Base):
    """One request to move a server's outbound mail from ``from_ip`` to ``to_ip``."""

    __tablename__ = "ip_switches"
    __table_args__ = (
        Index(
            "uq_ip_switches_active_server",
            "server_id",
            unique=True,
            postgresql_where=ACTIVE_WHERE,
            sqlite_where=ACTIVE_WHERE,
        ),
        Index("ix_ip_switches_next_run_at", "next_run_at"),
    )

    server_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("servers.id", ondelete="CASCADE"), index=True
    )
    from_ip: Mapped[str] = mapped_column(String(45))
    to_ip: Mapped[str] = mapped_column(String(45))
    auto: Mapped[bool] = mapped_column(Boolean, default=False)
    requested_by: Mapped[str | None] = mapped_column(String(300))
    rollback_position: Mapped[int | None] = mapped_column(Integer)
    previous_snat: Mapped[str | None] = mapped_column(String(45))
    snat_ports: Mapped[str | None] = mapped_column(String(200))
    previous_ptr: Mapped[str | None] = mapped_column(String(253))
    to_was_published: Mapped[bool] = mapped_column(Boolean, default=False)


class IpSwitchStep(IdMixin, TenantOwned, StepColumns, Base):
    """One step of a switch, in ``position`` order, with what it did (``detail``)."""

    __tablename__ = "ip_switch_steps"
    __table_args__ = (Index("uq_ip_switch_steps_position", "switch_id", "position", unique=True),)

    switch_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("ip_switches.id", ondelete="CASCADE"))
