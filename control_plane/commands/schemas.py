from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationError, model_validator

from control_plane.commands.models import Command
from control_plane.errors import InvalidInput
from control_plane.schemas import RequestModel, ResponseModel

CommandKind = Literal["ping", "collect-facts"]
CommandState = Literal["queued", "sent", "running", "succeeded", "failed", "timed_out", "cancelled"]


class PingPayload(RequestModel):
    echo: str | None = Field(default=None, max_length=200)
    delay_seconds: float = Field(default=0, ge=0, le=3600, description="Answer after this long.")


class CollectFactsPayload(RequestModel):
    pass


PAYLOADS: dict[str, type[RequestModel]] = {
    "ping": PingPayload,
    "collect-facts": CollectFactsPayload,
}


class CommandCreate(RequestModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"kind": "ping", "idempotency_key": "ping-1"}]}
    )

    kind: CommandKind
    payload: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        pattern=r"^[\x21-\x7e]+$",
        description="Repeating a request with the same key returns the first command.",
    )
    timeout_seconds: float = Field(default=300, gt=0, le=86_400, description="Run-time limit.")
    expires_in_seconds: float | None = Field(
        default=None, gt=0, le=30 * 86_400, description="Give up if not delivered by then."
    )

    @model_validator(mode="after")
    def _payload_fits_kind(self) -> CommandCreate:
        """Each kind has its own payload schema; errors name ``body.payload.<field>``."""
        if len(json.dumps(self.payload)) > 64 * 1024:
            raise InvalidInput("payload must be at most 64 KiB of JSON", field="body.payload")
        try:
            parsed = PAYLOADS[self.kind].model_validate(self.payload)
        except ValidationError as exc:
            raise InvalidInput(
                "; ".join(
                    f"payload.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()
                ),
                field="body.payload." + ".".join(map(str, exc.errors()[0]["loc"])),
            ) from None
        self.payload = parsed.model_dump(exclude_defaults=True)
        return self


class CommandOut(ResponseModel):
    id: uuid.UUID
    server_id: uuid.UUID
    tenant_id: uuid.UUID
    idempotency_key: str
    kind: str
    payload: dict[str, Any]
    state: CommandState
    attempts: int
    progress_percent: int
    progress_message: str
    result: Any | None
    error: str | None
    timeout_seconds: float
    created_at: datetime
    expires_at: datetime | None
    sent_at: datetime | None
    started_at: datetime | None
    deadline_at: datetime | None
    cancel_requested_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, command: Command) -> CommandOut:
        return cls(
            id=command.id,
            server_id=command.server_id,
            tenant_id=command.tenant_id,
            idempotency_key=command.idempotency_key,
            kind=command.kind,
            payload=json.loads(command.payload),
            state=command.state,
            attempts=command.attempts,
            progress_percent=command.progress_percent,
            progress_message=command.progress_message,
            result=json.loads(command.result) if command.result else None,
            error=command.error,
            timeout_seconds=command.timeout_seconds,
            created_at=command.created_at,
            expires_at=command.expires_at,
            sent_at=command.sent_at,
            started_at=command.started_at,
            deadline_at=command.deadline_at,
            cancel_requested_at=command.cancel_requested_at,
            finished_at=command.finished_at,
        )
