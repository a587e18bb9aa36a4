from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import ConfigDict

from control_plane.schemas import Name, RequestModel, ResponseModel


class TenantCreate(RequestModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"name": "Acme Corp"}]})

    name: Name


class TenantUpdate(RequestModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"name": "Acme Corporation"}]})

    name: Name | None = None


class TenantOut(ResponseModel):
    id: uuid.UUID
    name: str
    created_at: datetime
    updated_at: datetime
