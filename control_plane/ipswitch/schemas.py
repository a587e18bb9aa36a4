"""Request and response shapes of IP switches."""

from __future__ import annotations

import uuid
from datetime import datetime
from ipaddress import IPv4Address
from typing import Literal

from pydantic import ConfigDict, Field

from control_plane.schemas import RequestModel, ResponseModel

SwitchState = Literal["running", "rolling_back", "succeeded", "rolled_back", "failed"]
StepState = Literal["pending", "running", "done", "failed", "rolled_back", "skipped"]


class IpSwitchIn(RequestModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"to_ip": "198.51.100.22"}, {"auto": True}]},
    )

    to_ip: IPv4Address | None = Field(
        default=None, description="The server's address to send from next (or `auto`)."
    )
    auto: bool = Field(
        default=False,
        description="Pick the best standby address: clean on every list, not paused, warmup "
        "finished (or none), highest score.",
    )


class IpSwitchStepOut(ResponseModel):
    name: str = Field(description="preconditions, ptr, dns, snat, egress, drain, withdraw.")
    state: StepState
    started_at: datetime | None
    finished_at: datetime | None
    detail: str


class IpSwitchOut(ResponseModel):
    id: uuid.UUID
    tenant_id: uuid.UUID
    server_id: uuid.UUID
    state: SwitchState
    from_ip: str
    to_ip: str
    auto: bool
    requested_by: str | None
    error: str | None = Field(description="Why it rolled back or failed (and what is left).")
    created_at: datetime
    finished_at: datetime | None
    steps: list[IpSwitchStepOut]
