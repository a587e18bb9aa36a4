"""Request and response shapes of incidents, silences and maintenance windows."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, ConfigDict, Field, StringConstraints

from control_plane.schemas import Description, RequestModel, ResponseModel


def _in_utc(value: datetime) -> datetime:
    """Stored in UTC: a time that cannot be (year 1 at +01:00) is refused, not a 500."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("out of range") from None


Moment = Annotated[AwareDatetime, AfterValidator(_in_utc)]
IncidentState = Literal["open", "acknowledged", "resolved"]
Severity = Literal["critical", "warning", "info"]
CheckPattern = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_./:-]*\*?$"
    ),
]
Text = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        min_length=1,
        max_length=5000,
        pattern=r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]+$",
    ),
]


class EscalationOut(ResponseModel):
    policy_id: uuid.UUID | None
    step: int | None = Field(description="The policy step last notified (1-based); null: none.")
    round: int = Field(description="How many times the whole policy has run again.")
    next_at: datetime | None = Field(description="When the engine looks at it next.")
    last_notified_at: datetime | None
    channel_ids: list[uuid.UUID] = Field(description="Every channel told of it so far.")
    held_back_by: str | None = Field(
        description="The silence, maintenance window or inhibition holding it back now."
    )


class IncidentOut(ResponseModel):
    id: uuid.UUID
    tenant_id: uuid.UUID
    subject_kind: str
    subject_id: str
    check: str
    state: IncidentState
    severity: Severity = Field(description="The worst seen while it was open.")
    summary: str
    server_id: uuid.UUID | None
    workspace_id: uuid.UUID | None
    opened_at: datetime
    last_seen_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    resolved_by: str | None = Field(description="`auto` when its check came back ok, or who.")
    resolution: str | None
    escalation: EscalationOut


class TimelineEntryOut(ResponseModel):
    """An event of the incident, or one channel's delivery of a notification about it."""

    at: datetime
    kind: str = Field(
        description="triggered, updated, grouped, suppressed, released, escalated, repeat, "
        "no_policy, notified (a channel's delivery), acknowledged, commented, resolved."
    )
    detail: str
    actor: str | None = None
    step: int | None = None
    notification_id: uuid.UUID | None = None
    channel_id: uuid.UUID | None = None
    channel_name: str | None = None
    channel_kind: str | None = None
    event: str | None = Field(default=None, description="trigger, repeat, acknowledge, resolve.")
    status: str | None = Field(
        default=None, description="The delivery's: queued, sent, retrying, failed, quiet."
    )
    attempts: int | None = None
    last_error: str | None = None
    delivered_at: datetime | None = None


class IncidentDetailOut(IncidentOut):
    timeline: list[TimelineEntryOut]


class CommentIn(RequestModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"body": "restarting postfix"}]})

    body: Text


class SilenceIn(RequestModel):
    """Matchers (at least one; a missing one matches anything) and when it holds."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"check": "disk.*", "ends_at": "2099-01-01T00:00:00Z", "comment": "resizing"}
            ]
        }
    )

    tenant_id: uuid.UUID | None = Field(default=None, description="Admin keys name the tenant.")
    server_id: uuid.UUID | None = None
    check: CheckPattern | None = Field(
        default=None, description="A check id (`smtp.25`), or a prefix ending in `*` (`disk.*`)."
    )
    severity: Severity | None = None
    starts_at: Moment | None = Field(default=None, description="Default: now.")
    ends_at: Moment
    comment: Text = Field(description="Why.")


class SilenceOut(ResponseModel):
    id: uuid.UUID
    tenant_id: uuid.UUID
    server_id: uuid.UUID | None
    check: str | None
    severity: Severity | None
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str
    active: bool


class MaintenanceWindowIn(RequestModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"ends_at": "2099-01-01T00:00:00Z", "reason": "kernel upgrade"}]
        }
    )

    starts_at: Moment | None = Field(default=None, description="Default: now.")
    ends_at: Moment
    reason: Description = ""


class MaintenanceWindowOut(ResponseModel):
    id: uuid.UUID
    server_id: uuid.UUID
    starts_at: datetime
    ends_at: datetime
    reason: str
    created_by: str
    active: bool
