"""Request and response shapes of recommendations and resizes."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import ConfigDict, Field

from control_plane.provisioning.schemas import PlanOut
from control_plane.schemas import RequestModel, ResponseModel

ResizeState = Literal["running", "rolling_back", "succeeded", "failed"]
StepState = Literal["pending", "running", "done", "failed", "rolled_back", "skipped"]
Resource = Literal["cpu", "memory", "disk"]


class ResourceEvidence(ResponseModel):
    resource: Resource
    unit: Literal["cores", "bytes"]
    series: str = Field(description="The usage series read (`cpu_percent`, `fs_used_bytes:/`…).")
    hours: int = Field(description="Hourly points in the window.")
    percentile: float = Field(description="The percentile of those points (p90 by default).")
    target: float = Field(description="percentile × headroom: what the plan must hold.")
    current: float | None = Field(description="What the current plan holds.")
    recommended: float | None = Field(description="What the recommended plan holds.")


class RecommendationOut(ResponseModel):
    server_id: uuid.UUID
    state: Literal["resize", "keep", "unknown"] = Field(
        description="resize: a cheaper or a needed bigger plan fits; keep: the current plan "
        "is the cheapest that fits; unknown: not enough data or no catalog (see reason)."
    )
    reason: str
    window_from: datetime
    window_to: datetime
    percentile: float
    headroom: float
    current_plan: PlanOut | None
    recommended_plan: PlanOut | None
    direction: Literal["up", "down"] | None
    monthly_price_difference: Decimal | None = Field(
        description="Recommended minus current monthly price (negative: saves money)."
    )
    currency: str | None
    driver: Resource | None = Field(description="The resource that sizes the recommendation.")
    evidence: list[ResourceEvidence]


class ResizeIn(RequestModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"plan": "local-medium", "dry_run": True}]},
    )

    plan: str = Field(min_length=1, max_length=64, description="The plan id to move to.")
    dry_run: bool = Field(default=False, description="Only say what would happen and cost.")


class StepPreview(ResponseModel):
    name: str
    does: str


class ResizePreview(ResponseModel):
    server_id: uuid.UUID
    provider: str
    current_plan: PlanOut
    new_plan: PlanOut
    monthly_price: Decimal
    monthly_price_difference: Decimal
    currency: str
    direction: Literal["up", "down", "sideways"]
    expected_downtime: str
    steps: list[StepPreview]


class ResizeStepOut(ResponseModel):
    name: str = Field(description="preconditions, resize, wait, verify, confirm, record, revert.")
    state: StepState
    started_at: datetime | None
    finished_at: datetime | None
    detail: str


class ResizeOut(ResponseModel):
    id: uuid.UUID
    tenant_id: uuid.UUID
    server_id: uuid.UUID
    provider: str
    state: ResizeState
    from_plan: str
    to_plan: str
    from_price: Decimal
    to_price: Decimal
    currency: str
    requested_by: str | None
    error: str | None = Field(description="Why it failed (and whether the revert did too).")
    created_at: datetime
    finished_at: datetime | None
    progress: float = Field(description="Share of the steps finished, 0 to 1.")
    steps: list[ResizeStepOut]


class ResizeAccepted(ResponseModel):
    """What POST …/resize answers: the preview, and the resize when one was started."""

    preview: ResizePreview
    resize: ResizeOut | None
