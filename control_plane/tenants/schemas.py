from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import ConfigDict, Field

from control_plane.schemas import Name, RequestModel, ResponseModel


class TenantCreate(RequestModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"name": "Acme Corp"}]})

    name: Name


class TenantUpdate(RequestModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"name": "Acme Corporation"}]})

    name: Name | None = None
    cost_split: Literal["mailboxes", "storage", "even"] | None = Field(
        default=None,
        description="How a shared server's cost is split among the workspaces whose domains "
        "it carries: by mailboxes, by storage, or evenly.",
    )


class TenantOut(ResponseModel):
    id: uuid.UUID
    name: str
    cost_split: str
    created_at: datetime
    updated_at: datetime
