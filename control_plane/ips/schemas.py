"""Request and response shapes of the IP inventory."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, StringConstraints

from control_plane.mailstats.schemas import ReportingOut
from control_plane.schemas import RequestModel, ResponseModel

Role = Literal["sending", "standby", "retired"]
Listing = Literal["listed", "clean", "unknown", "unchecked"]
PlanName = Literal["standard", "conservative", "aggressive", "custom", "none"]
Reason = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=500, pattern=r"^[^\x00-\x1f\x7f]+$"
    ),
]


class WarmupOut(ResponseModel):
    plan: str | None = Field(description="standard, conservative, aggressive, custom; null: none.")
    start_date: date | None
    day: int | None = Field(description="Day of the plan today (1 = its first); null: not warming.")
    days: int | None = Field(description="How many days the plan has.")
    today_cap: int | None = Field(description="What it may send today; null: no cap.")
    caps: list[int] | None = Field(description="The plan's daily caps, day 1 first.")
    done_at: datetime | None


class PauseOut(ResponseModel):
    paused: bool
    reason: str | None
    by: str | None = Field(description="`auto` or the API key that paused it.")
    at: datetime | None


class IpOut(ResponseModel):
    id: uuid.UUID
    tenant_id: uuid.UUID
    server_id: uuid.UUID
    address: str
    provider: str
    is_main: bool
    ptr: str | None
    role: Role
    dns_published: bool
    warmup: WarmupOut
    pause: PauseOut
    listing: Listing = Field(description="The DNSBL verdict; `unchecked` before the first check.")
    score: int | None = Field(description="0-100, 100 = clean on every list; null: unchecked.")
    listing_checked_at: datetime | None
    assigned_at: datetime


class IpEventOut(ResponseModel):
    at: datetime
    kind: str
    detail: str
    actor: str | None


class IpDetailOut(IpOut):
    events: list[IpEventOut] = Field(description="Its history on this server, newest first.")


class WarmupIn(RequestModel):
    plan: PlanName | None = Field(
        default=None,
        description="The plan (`none` ends warmup: no cap); omit to keep the current one "
        "(e.g. to set only today_cap).",
    )
    start_date: date | None = Field(default=None, description="Its first day (UTC); default today.")
    caps: list[int] | None = Field(default=None, description="A custom plan's daily caps.")
    today_cap: int | None = Field(
        default=None, ge=0, le=10_000_000, description="A cap for today only (UTC day)."
    )

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"plan": "standard", "start_date": "2026-12-01"}]}
    )


class PauseIn(RequestModel):
    reason: Reason

    model_config = ConfigDict(json_schema_extra={"examples": [{"reason": "complaints spike"}]})


class IpAddIn(RequestModel):
    address: str | None = Field(
        default=None,
        max_length=45,
        description="Manual servers only: the address their owner added. Provider servers: "
        "omit (the provider picks it).",
    )

    model_config = ConfigDict(json_schema_extra={"examples": [{"address": "192.0.2.10"}]})


class AllowanceOut(ResponseModel):
    day: date
    cap: int | None = Field(description="Today's cap; null: no cap.")
    sent: int = Field(description="Messages sent or bounced from it today (UTC).")
    remaining: int | None = Field(description="cap - sent (never below 0); null: no cap.")
    paused: bool = Field(description="Held: paused, or today's cap reached.")
    reason: str = Field(description="Why it is held; empty when it is not.")
    reporting: ReportingOut = Field(
        description="Whether ``sent`` is measured: only ``reporting`` means it is today's "
        "count; otherwise it is what was last reported (no figures is not zero mail)."
    )
