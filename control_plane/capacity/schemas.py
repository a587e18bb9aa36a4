"""What the capacity API answers."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import Field

from control_plane.schemas import ResponseModel


class CrossingOut(ResponseModel):
    level: float = Field(description="Per cent of capacity.")
    status: Literal["above", "forecast", "not_rising", "beyond_horizon"] = Field(
        description="above: the last 24 h's busiest hour is at or above it already; "
        "forecast: crossed at 'at'; not_rising: the trend is flat or falling; "
        "beyond_horizon: more than a year out."
    )
    at: datetime | None = Field(description="When the fitted daily peak reaches the level.")
    earliest: datetime | None = Field(description="From the slope's upper confidence bound.")
    latest: datetime | None = Field(
        description="From its lower bound; null when that bound is not rising (may never)."
    )
    in_days: float | None


class ForecastOut(ResponseModel):
    resource: Literal["cpu", "memory", "disk", "inodes"]
    mountpoint: str | None
    check: str = Field(description="The check it raises: forecast.disk./, forecast.memory, …")
    state: Literal["ok", "warning", "unknown"] = Field(
        description="warning: a level not crossed yet is forecast within the warning days; "
        "unknown: too little data (the summary says why)."
    )
    severity: Literal["critical", "warning", "info"] | None
    summary: str
    current_percent: float | None = Field(description="The newest hourly average.")
    peak_percent: float | None = Field(
        description="The last 24 h's busiest hour (p95 of hourly averages): what is fitted."
    )
    slope_per_day: float | None = Field(description="Percentage points a day (Theil–Sen).")
    slope_band: tuple[float, float] | None = Field(description="Its 95 % confidence interval.")
    days_fitted: int
    fitted_percent: float | None = Field(
        default=None,
        description="The fitted line's value at the end of computed_at's hour: the forecast "
        "line starts there and moves slope_per_day a day (null: no forecast).",
    )
    thresholds: list[CrossingOut]


class AnomalyOut(ResponseModel):
    resource: Literal["cpu", "memory", "disk", "inodes"]
    mountpoint: str | None
    at: datetime
    value_percent: float
    baseline_percent: float
    allowed: float = Field(description="k × spread: the baseline's half-width.")
    reason: str


class CapacityOut(ResponseModel):
    server_id: uuid.UUID
    computed_at: datetime
    window_days: float
    warning_days: float
    fitted_on: str = Field(description="What the forecasts fit, and how.")
    baselines: dict[str, str] = Field(
        description="Resource check → the anomaly baseline used (hour_of_week, hour_of_day, "
        "or none: too little history)."
    )
    forecasts: list[ForecastOut]
    anomalies: list[AnomalyOut] = Field(description="Newest first, at most 200.")
    anomalies_total: int
