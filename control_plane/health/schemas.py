"""What the health API answers."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import Field

from control_plane.schemas import ResponseModel

State = Literal["ok", "failing", "unknown"]
Severity = Literal["critical", "warning", "info"]


class PendingOut(ResponseModel):
    state: State
    severity: Severity
    detail: str | None
    since: datetime = Field(description="Re-checked once the flap guard's wait has passed.")


class CheckOut(ResponseModel):
    check: str = Field(description="Stable id (smtp.25, tls.expiry, agent.link, disk./, …).")
    state: State = Field(description="Confirmed: ok, failing, or unknown (could not check).")
    severity: Severity
    detail: str
    observed: str | None
    threshold: str | None
    last_run_at: datetime
    changed_at: datetime
    unknowns_in_a_row: int
    pending: PendingOut | None = Field(
        description="A failing result waiting for its re-check before it counts (flap guard)."
    )


class HealthOut(ResponseModel):
    server_id: uuid.UUID
    overall: Literal["ok", "warning", "critical", "unknown"] = Field(
        description="critical: a check is critical; warning: one fails; unknown: one could "
        "not be checked (or none has run yet); ok: every check passed."
    )
    next_run_at: datetime | None
    last_run_at: datetime | None
    checks: list[CheckOut]


class ResultOut(ResponseModel):
    check: str
    state: State
    severity: Severity
    detail: str
    observed: str | None
    threshold: str | None


class RunOut(HealthOut):
    results: list[ResultOut] = Field(
        description="What this run found, before the flap guard (mailu.* and smtp.outbound "
        "arrive later, from the agent)."
    )


class ChangeOut(ResponseModel):
    at: datetime
    check: str
    state: State
    severity: Severity
    previous_state: State | None
    previous_severity: Severity | None
    detail: str
    observed: str | None
    threshold: str | None


class HistoryOut(ResponseModel):
    server_id: uuid.UUID
    items: list[ChangeOut]
