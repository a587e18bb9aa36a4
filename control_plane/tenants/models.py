from __future__ import annotations

from typing import ClassVar

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db.base import Base, IdMixin, TimestampMixin
from control_plane.db.tenancy import TenantScoped


class Tenant(IdMixin, TimestampMixin, TenantScoped, Base):
    """A customer company. A tenant-scoped session sees only its own tenant row."""

    __tablename__ = "tenants"
    __tenant_key__: ClassVar[str] = "id"

    name: Mapped[str] = mapped_column(String(200), unique=True)
    # How a shared server's cost is split among the workspaces whose domains it carries:
    # mailboxes | storage | even (costs/rating.py).
    cost_split: Mapped[str] = mapped_column(String(16), default="mailboxes")
