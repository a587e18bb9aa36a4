from __future__ import annotations

import uuid
from decimal import Decimal

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db.base import Base, IdMixin, Money, TenantOwned, TimestampMixin


class Workspace(IdMixin, TimestampMixin, TenantOwned, Base):
    __tablename__ = "workspaces"
    __table_args__ = (UniqueConstraint("tenant_id", "name", name="uq_workspaces_tenant_name"),)

    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(String(2000), default="")
    escalation_policy_id: Mapped[uuid.UUID | None] = mapped_column(  # NULL: the tenant default
        ForeignKey("escalation_policies.id", ondelete="SET NULL"), index=True
    )
    # What an agency bills its client on top of cost: cost × (1 + percent/100) + fixed a
    # month (either may be NULL: none).
    markup_percent: Mapped[Decimal | None] = mapped_column(Money())
    markup_fixed: Mapped[Decimal | None] = mapped_column(Money())
