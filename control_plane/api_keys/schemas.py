from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, ConfigDict, Field

from control_plane.schemas import Name, RequestModel, ResponseModel


class ApiKeyCreate(RequestModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"name": "billing exporter", "scope": "tenant"}]}
    )

    name: Name = "unnamed"
    scope: Literal["admin", "tenant"] = "tenant"
    tenant_id: uuid.UUID | None = Field(
        default=None,
        description="For a tenant key made with an admin key; a tenant key uses its own tenant.",
    )
    expires_at: AwareDatetime | None = Field(default=None, description="Must be in the future.")


class ApiKeyOut(ResponseModel):
    id: uuid.UUID
    name: str
    scope: Literal["admin", "tenant"]
    tenant_id: uuid.UUID | None
    hint: str = Field(description="Prefix and last four characters, to recognise the key.")
    created_at: datetime
    created_by: uuid.UUID | None
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The key itself. Shown only in this response; store it now.")
