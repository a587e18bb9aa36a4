from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from control_plane.schemas import ResponseModel


class AuditEventOut(ResponseModel):
    id: uuid.UUID
    at: datetime
    tenant_id: uuid.UUID | None
    actor_kind: Literal["api_key", "cli"]
    key_id: uuid.UUID | None
    key_name: str | None
    key_hint: str | None
    user: str | None
    address: str
    action: str
    object_type: str | None
    object_id: uuid.UUID | None
    request: str
    status: int | None
    succeeded: bool
