from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from pydantic import ConfigDict, Field

from control_plane.schemas import Description, Name, RequestModel, ResponseModel


class WorkspaceCreate(RequestModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"name": "Client A", "description": "outbound for A"}]}
    )

    name: Name
    description: Description = ""
    tenant_id: uuid.UUID | None = Field(
        default=None, description="Required with an admin key; a tenant key uses its own tenant."
    )


class WorkspaceUpdate(RequestModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"description": "renamed client"}]})

    name: Name | None = None
    description: Description | None = None
    escalation_policy_id: uuid.UUID | None = Field(
        default=None,
        description="An escalation policy of the same tenant for this workspace's servers; "
        "null: the tenant's default.",
    )
    markup_percent: Decimal | None = Field(
        default=None, ge=0, max_digits=12, decimal_places=2,
        description="Billed on top of cost, in percent; null: none.",
    )  # fmt: skip
    markup_fixed: Decimal | None = Field(
        default=None, ge=0, max_digits=12, decimal_places=2,
        description="Billed on top of cost a month, in the cost's currency; null: none.",
    )  # fmt: skip


class WorkspaceOut(ResponseModel):
    id: uuid.UUID
    tenant_id: uuid.UUID
    name: str
    description: str
    escalation_policy_id: uuid.UUID | None
    markup_percent: Decimal | None
    markup_fixed: Decimal | None
    created_at: datetime
    updated_at: datetime
