from __future__ import annotations

import uuid

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db.base import Base, IdMixin, TenantOwned, TimestampMixin


class Workspace(IdMixin, TimestampMixin, TenantOwned, Base):
    __tablename__ = "workspaces"
    __table_args__ = (UniqueConstraint("tenant_id", "name", name="uq_workspaces_tenant_name"),)

    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(String(2000), default="")
    escalation_policy_id: Mapped[uuid.UUID | None] = mapped_column(  # NULL: the tenant default
        ForeignKey("escalation_policies.id", ondelete="SET NULL"), index=True
    )
