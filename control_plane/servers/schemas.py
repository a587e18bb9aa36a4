from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import ConfigDict, Field

from control_plane.schemas import Name, RequestModel, ResponseModel

AgentStatus = Literal["pending", "online", "unknown", "revoked"]


class ServerCreate(RequestModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"name": "mx1", "provider": "manual"}]}
    )

    name: Name
    provider: Literal["manual"] = Field(
        default="manual", description="`manual`: a VPS the customer made, enrolled by join token."
    )
    workspace_id: uuid.UUID | None = None
    tenant_id: uuid.UUID | None = Field(
        default=None, description="Required with an admin key; a tenant key uses its own tenant."
    )


class ServerOut(ResponseModel):
    id: uuid.UUID
    tenant_id: uuid.UUID
    workspace_id: uuid.UUID | None
    name: str
    provider: str
    status: AgentStatus = Field(description="The agent's status, from enrollment and heartbeats.")
    agent_version: str | None
    hostname: str | None
    capabilities: list[str]
    enrolled_at: datetime | None
    last_heartbeat_at: datetime | None
    certificate_serial: str | None
    certificate_expires_at: datetime | None
    created_at: datetime
    updated_at: datetime


class JoinTokenOut(ResponseModel):
    token: str = Field(description="Single use; shown only here.")
    expires_at: datetime
    ca_pin: str = Field(description="sha256:<hex> of the agent CA's public key.")
    gateway_address: str
    enroll_address: str
    agent_toml: str = Field(description="A ready /etc/mailfleet/agent.toml for this server.")
