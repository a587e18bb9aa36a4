"""Request and response shapes of alert channels, escalation policies and notifications."""

from __future__ import annotations

import uuid
from datetime import datetime, time
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ConfigDict, Field, StringConstraints, field_validator, model_validator

from control_plane.schemas import Name, RequestModel, ResponseModel

ChannelKind = Literal["email", "slack", "webhook", "pagerduty", "in_app"]
Clock = Annotated[str, StringConstraints(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")]
Url = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
Secret = Annotated[str, StringConstraints(min_length=16, max_length=500)]
RoutingKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{8,100}$")]
Address = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=320)]
Minutes = Annotated[float, Field(ge=0, le=100_000)]


class QuietHoursIn(RequestModel):
    start: Clock = Field(description="HH:MM, local time.")
    end: Clock = Field(description="HH:MM; before start, the window spans midnight.")
    time_zone: str = Field(description="An IANA time zone, e.g. Europe/Paris.")
    critical_passes: bool = Field(default=True, description="Critical messages still go out.")

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @model_validator(mode="after")
    def _window(self) -> QuietHoursIn:
        if time.fromisoformat(self.start) == time.fromisoformat(self.end):
            raise ValueError("start and end are equal: an empty (or endless) window")
        return self


class QuietHoursOut(ResponseModel):
    start: str
    end: str
    time_zone: str
    critical_passes: bool


class ChannelCreate(RequestModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"name": "ops", "kind": "webhook", "url": "https://hooks.example.com/mailfleet",
                 "secret": "a-long-random-shared-secret"},
                {"name": "oncall", "kind": "pagerduty", "routing_key": "R0UT1NGK3Y0000000000"},
                {"name": "team", "kind": "email", "to": ["ops@example.com"]},
            ]
        }
    )  # fmt: skip

    name: Name
    kind: ChannelKind
    tenant_id: uuid.UUID | None = Field(
        default=None, description="Admin keys: the tenant; none makes a fleet-wide channel."
    )
    url: Url | None = Field(default=None, description="webhook, slack. Kept in Vault.")
    secret: Secret | None = Field(
        default=None, description="webhook: the HMAC key (16+ characters). Kept in Vault."
    )
    to: list[Address] | None = Field(default=None, min_length=1, max_length=50)
    routing_key: RoutingKey | None = Field(
        default=None, description="pagerduty: the integration's key. Kept in Vault."
    )
    quiet_hours: QuietHoursIn | None = None


class ChannelUpdate(RequestModel):
    """Only the fields sent change; ``quiet_hours: null`` removes the window."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"quiet_hours": {"start": "22:00", "end": "07:00", "time_zone": "Europe/Paris",
                                 "critical_passes": True}}
            ]
        }
    )  # fmt: skip

    name: Name | None = None
    url: Url | None = None
    secret: Secret | None = None
    to: list[Address] | None = Field(default=None, min_length=1, max_length=50)
    routing_key: RoutingKey | None = None
    quiet_hours: QuietHoursIn | None = None


class ChannelOut(ResponseModel):
    id: uuid.UUID
    tenant_id: uuid.UUID | None = Field(description="Null: a fleet-wide (admin) channel.")
    name: str
    kind: ChannelKind
    to: list[str] | None
    url_hint: str | None = Field(description="Scheme and host only; the URL is in Vault.")
    routing_key_hint: str | None
    has_secret: bool
    quiet_hours: QuietHoursOut | None
    created_at: datetime
    updated_at: datetime


class StepIn(RequestModel):
    channel_ids: list[uuid.UUID] = Field(min_length=1, max_length=20)
    wait_minutes: Minutes = Field(
        default=0, description="Before the next step, if nobody acknowledges."
    )


class StepOut(ResponseModel):
    channel_ids: list[uuid.UUID]
    wait_minutes: float


class PolicyCreate(RequestModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"name": "default",
                 "steps": [{"channel_ids": ["019ad1c4-0000-7000-8000-000000000001"],
                            "wait_minutes": 5}],
                 "repeat": 1, "repeat_interval_minutes": 60}
            ]
        }
    )  # fmt: skip

    name: Name
    tenant_id: uuid.UUID | None = Field(
        default=None, description="Admin keys: the tenant; none makes a fleet policy."
    )
    steps: list[StepIn] = Field(min_length=1, max_length=20)
    repeat: int = Field(default=0, ge=0, le=100, description="More runs after the last step.")
    repeat_interval_minutes: Minutes | None = Field(
        default=None, description="Re-notify open, unacknowledged incidents this often."
    )
    is_default: bool | None = Field(
        default=None, description="The tenant's default (its first policy always is)."
    )


class PolicyUpdate(RequestModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"repeat": 2}]})

    name: Name | None = None
    steps: list[StepIn] | None = Field(default=None, min_length=1, max_length=20)
    repeat: int | None = Field(default=None, ge=0, le=100)
    repeat_interval_minutes: Minutes | None = None
    is_default: bool | None = None


class PolicyOut(ResponseModel):
    id: uuid.UUID
    tenant_id: uuid.UUID | None
    name: str
    steps: list[StepOut]
    repeat: int
    repeat_interval_minutes: float | None
    is_default: bool
    created_at: datetime
    updated_at: datetime


class AssignPolicy(RequestModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"escalation_policy_id": "019ad1c4-0000-7000-8000-000000000002"}]
        }
    )

    escalation_policy_id: uuid.UUID | None = Field(
        description="Null: fall back to the workspace's, then the tenant's default."
    )


class AssignmentOut(ResponseModel):
    escalation_policy_id: uuid.UUID | None = Field(description="Assigned here.")
    effective: PolicyOut | None = Field(description="What applies after fallbacks.")


class AttemptOut(ResponseModel):
    at: datetime
    ok: bool
    status_code: int | None
    error: str | None
    duration_ms: int


class DeliveryOut(ResponseModel):
    id: uuid.UUID
    notification_id: uuid.UUID
    channel_id: uuid.UUID
    channel_name: str
    kind: str
    status: Literal["queued", "sent", "retrying", "failed", "quiet"]
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    last_status_code: int | None
    delivered_at: datetime | None
    created_at: datetime
    attempt_log: list[AttemptOut] = Field(default_factory=list)


class NotificationOut(ResponseModel):
    id: uuid.UUID
    tenant_id: uuid.UUID | None
    created_at: datetime
    event: str
    dedup_key: str
    title: str
    severity: str
    step: int | None
    in_app: bool
    read_at: datetime | None
    failed_at: datetime | None = Field(description="Every channel finally failed.")
    body: dict[str, object]


class NotificationDetail(NotificationOut):
    deliveries: list[DeliveryOut]


class RelayOut(ResponseModel):
    host: str | None
    port: int
    security: str
    username: str | None
    from_address: str
    has_password: bool


class RelayPassword(RequestModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"password": "relay-password"}]})

    password: Annotated[str, StringConstraints(min_length=1, max_length=500)]


class MarkRead(RequestModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"all": True}]})

    ids: list[uuid.UUID] = Field(default_factory=list, max_length=500)
    all: bool = Field(default=False, description="Every unread notification in the feed.")


class ReadOut(ResponseModel):
    marked: int
