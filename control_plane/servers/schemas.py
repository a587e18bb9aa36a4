from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, SecretStr

from control_plane.commands.schemas import CommandOut
from control_plane.schemas import Name, RequestModel, ResponseModel

AgentStatus = Literal["pending", "online", "unknown", "revoked"]
# An adopted machine's SSH credential: kept in Vault, never answered, logged or shown again
# (SecretStr: a repr or a log of the model shows stars).
SshPrivateKey = Annotated[
    SecretStr,
    Field(
        max_length=16_384,
        description="`ssh` provider: root's private key, OpenSSH or PEM text without a "
        "passphrase. Kept in Vault; never shown again.",
    ),
]
SshPassword = Annotated[
    SecretStr,
    Field(
        min_length=1,
        max_length=1024,
        description="`ssh` provider: root's password, instead of a key. Kept in Vault; never "
        "shown again.",
    ),
]


ProvisionState = Literal[
    "requested",
    "creating",
    "booting",
    "installing_agent",
    "enrolling",
    "installing_mail",
    "dns",
    "tls",
    "ready",
    "failed",
    "deprovisioning",
]


class ServerCreate(RequestModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"name": "mx1", "provider": "manual", "mail_stack": "none"},
                {
                    "name": "mx2",
                    "provider": "local",
                    "region": "local",
                    "plan": "local-small",
                    "mail_stack": "mailu",
                    "mail_hostname": "mx2.example.net",
                },
            ]
        }
    )

    name: Name
    provider: str = Field(
        default="manual",
        pattern=r"^[a-z][a-z0-9_-]{0,31}$",
        description=(
            "`manual`: a VPS the customer made, enrolled by join token; `ssh`: a machine the "
            "customer has, adopted: MailFleet installs its agent over SSH (`address` and one "
            "of `ssh_private_key`, `ssh_password`); otherwise a provider MailFleet rents the "
            "VPS from (`local`, `hostwinds`, … as configured)."
        ),
    )
    address: str | None = Field(
        default=None,
        max_length=45,
        description="`ssh` provider: the machine's IP address (MailFleet logs in as root on "
        "port 22).",
    )
    ssh_private_key: SshPrivateKey | None = None
    ssh_password: SshPassword | None = None
    region: str | None = Field(default=None, max_length=64, description="Provider region id.")
    plan: str | None = Field(default=None, max_length=64, description="Provider plan id.")
    mail_stack: Literal["mailu", "none"] = Field(
        default="mailu",
        description="`mailu`: the agent installs MailU; `none`: an agent that only monitors "
        "and backs up (e.g. a machine without Docker).",
    )
    mail_hostname: str | None = Field(
        default=None,
        max_length=253,
        description="The mail host's name (e.g. mx1.example.net), required with MailU; "
        "internationalised names are accepted and stored in IDNA form.",
    )
    workspace_id: uuid.UUID | None = None
    tenant_id: uuid.UUID | None = Field(
        default=None, description="Required with an admin key; a tenant key uses its own tenant."
    )


class SshCredentialIn(RequestModel):
    """A new SSH credential for an adopted server (the old one was wrong, or changed)."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"ssh_password": "correct horse battery staple"}]}
    )

    ssh_private_key: SshPrivateKey | None = None
    ssh_password: SshPassword | None = None


class ServerOut(ResponseModel):
    id: uuid.UUID
    tenant_id: uuid.UUID
    workspace_id: uuid.UUID | None
    name: str
    provider: str
    region: str | None
    plan: str | None
    plan_monthly_price: Decimal | None = Field(
        default=None, description="The plan's monthly price when ordered or last resized."
    )
    plan_currency: str | None = None
    state: ProvisionState = Field(description="Where the provisioning workflow is.")
    state_changed_at: datetime | None
    failed_step: str | None
    failure_reason: str | None
    instance_id: str | None = Field(description="The provider's id for the VPS.")
    ipv4: str | None
    mail_stack: str
    mail_hostname: str | None
    ssh_public_key: str | None
    ssh_host_key: str | None = Field(
        default=None,
        description="The machine's SSH host key, pinned on first contact by the agent's "
        "install over SSH; a changed key is refused until an admin clears the pin.",
    )
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


class ServerEventOut(ResponseModel):
    id: uuid.UUID
    at: datetime
    state: str
    kind: Literal["state", "progress", "retry", "failed", "note", "backup", "recovery", "output"]
    message: str


class SshKeyOut(ResponseModel):
    private_key: str = Field(description="OpenSSH private key; shown once.")
    public_key: str


class SshKeyRotationOut(ResponseModel):
    public_key: str
    command: CommandOut = Field(description="The agent installing the new key; follow it.")
