"""Imports every model so the metadata is complete (Alembic, tenancy registry)."""

from control_plane.api_keys.models import ApiKey
from control_plane.db.base import Base
from control_plane.tenants.models import Tenant
from control_plane.workspaces.models import Workspace

__all__ = ["ApiKey", "Base", "Tenant", "Workspace"]
