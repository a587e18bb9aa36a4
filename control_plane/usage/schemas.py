from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


class PointOut(BaseModel):
    t: datetime
    avg: float
    min: float
    max: float
    count: int


class SummaryOut(BaseModel):
    """Every figure is null when the series has no data in the range (unknown)."""

    average: float | None
    p95: float | None
    max: float | None
    peak_hour: int | None = Field(description="Hour of day (UTC, 0–23) with the highest mean.")
    peak_weekday: int | None = Field(description="Day of week (0 = Monday) with the highest mean.")
    trend_per_day: float | None = Field(
        description="Theil–Sen slope in the series' unit per day (null under a day of data)."
    )


class SeriesOut(BaseModel):
    name: str = Field(description="Series name (fs_used_bytes:/var, memory_percent…).")
    unit: str
    summary: SummaryOut
    points: list[PointOut]


class ResourceOut(BaseModel):
    resource: Literal["cpu", "load", "memory", "swap", "filesystem", "network", "disk_io",
                      "processes", "mail_queue"]  # fmt: skip
    mountpoint: str | None = None
    series: list[SeriesOut]


class UsageOut(BaseModel):
    server_id: uuid.UUID
    start: datetime = Field(alias="from")
    end: datetime = Field(alias="to")
    step: str
    resources: list[ResourceOut]


class LimitOut(BaseModel):
    """One server's use of one resource now (the newest sample), in per cent."""

    server_id: uuid.UUID
    server_name: str
    tenant_id: uuid.UUID
    percent: float
    mountpoint: str | None = None
    sampled_at: datetime


class FleetTotalsOut(BaseModel):
    servers: int
    reporting: int = Field(description="Servers with a sample within the unknown-after time.")
    cpu_percent_average: float | None
    memory_used_bytes: int
    memory_total_bytes: int
    disk_used_bytes: int
    disk_total_bytes: int
    net_rx_bytes_per_second: float
    net_tx_bytes_per_second: float
    mail_queue_messages: int


class FleetUsageOut(BaseModel):
    """Not echoing the filters: a tenant key naming another tenant sees nothing of it, not
    even its id back."""

    totals: FleetTotalsOut
    closest_to_limits: dict[Literal["disk", "memory", "cpu"], list[LimitOut]]
