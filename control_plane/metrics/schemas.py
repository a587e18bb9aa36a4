from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel


class MetricsOut(BaseModel):
    server_id: uuid.UUID
    start: datetime
    end: datetime
    step: str
    samples: list[dict[str, Any]] | None = None
    series: dict[str, list[dict[str, Any]]] | None = None
