from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field

from control_plane.schemas import RequestModel, ResponseModel

ChangeState = Literal["pending", "active", "failed"]
GIB = 1024**3


class DomainCreate(RequestModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"name": "example.net", "server_id": "01a20000-0000-7000-8000-000000000001"}
            ]
        }
    )

    name: str = Field(
        min_length=1,
        max_length=253,
        description="The mail domain; internationalised names are stored in IDNA form.",
    )
    server_id: uuid.UUID = Field(description="The MailU server the domain lives on.")
    workspace_id: uuid.UUID | None = Field(
        default=None,
        description="Whose domain it is (a shared server's cost is split by it); default: "
        "the server's workspace.",
    )


class DomainUpdate(RequestModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"workspace_id": "01a20000-0000-7000-8000-000000000001"}]}
    )

    workspace_id: uuid.UUID | None = Field(
        description="A workspace of the domain's tenant, or null for none."
    )


DkimRole = Literal["signing", "next", "retiring"]


class DkimRecordOut(ResponseModel):
    selector: str
    role: DkimRole = Field(
        description="signing: MailU signs with it; next: published ahead of a switch; "
        "retiring: still published after a switch, for mail in flight."
    )
    name: str = Field(description="The TXT record's owner name.")
    value: str = Field(description="The TXT record's value (v=DKIM1; k=rsa; p=…).")


class DomainOut(ResponseModel):
    id: uuid.UUID
    tenant_id: uuid.UUID
    server_id: uuid.UUID
    workspace_id: uuid.UUID | None = Field(description="Whose domain it is, for cost.")
    name: str
    dkim_selector: str = Field(description="The selector MailU signs this domain's mail with.")
    dkim_records: list[DkimRecordOut] = Field(
        description="Every DKIM record DNS must publish now (more than one during a rotation)."
    )
    state: ChangeState = Field(description="Whether MailU has the domain yet.")
    error: str | None
    created_at: datetime


class MailboxCreate(RequestModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"local_part": "sales", "quota_bytes": 2 * GIB}]}
    )

    local_part: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._+-]+$")
    quota_bytes: int = Field(default=GIB, ge=0, le=1024 * GIB, description="0: no limit.")
    password: str | None = Field(
        default=None,
        min_length=12,
        max_length=256,
        description="Generated when omitted; either way it is kept in Vault and shown once.",
    )
    displayed_name: str = Field(default="", max_length=160)
    enabled: bool = True


class MailboxUpdate(RequestModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"quota_bytes": 5 * GIB}]})

    quota_bytes: int | None = Field(default=None, ge=0, le=1024 * GIB)
    displayed_name: str | None = Field(default=None, max_length=160)
    enabled: bool | None = None


class MailboxOut(ResponseModel):
    id: uuid.UUID
    tenant_id: uuid.UUID
    domain_id: uuid.UUID
    address: str
    quota_bytes: int
    displayed_name: str
    enabled: bool
    state: ChangeState
    error: str | None
    credentials_taken: bool
    created_at: datetime
    updated_at: datetime


class AliasCreate(RequestModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"local_part": "info", "destinations": ["sales@example.net"]}]
        }
    )

    local_part: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._+-]+$")
    destinations: list[str] = Field(
        min_length=1,
        max_length=50,
        description="Mailboxes on the same server (Mailu delivers aliases only to local users).",
    )
    comment: str = Field(default="", max_length=255)


class AliasUpdate(RequestModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"comment": "web form"}]})

    destinations: list[str] | None = Field(default=None, min_length=1, max_length=50)
    comment: str | None = Field(default=None, max_length=255)


class AliasOut(ResponseModel):
    id: uuid.UUID
    tenant_id: uuid.UUID
    domain_id: uuid.UUID
    address: str
    destinations: list[str]
    comment: str
    state: ChangeState
    error: str | None
    created_at: datetime
    updated_at: datetime


class CredentialsOut(ResponseModel):
    username: str
    password: str = Field(description="Shown once; rotate for a new one.")
    smtp_host: str | None
    smtp_port: int = 587
    imap_port: int = 993


MailuSecret = Literal["secret_key", "api_token", "admin_password"]
WEEK = 7 * 86400


class DkimRotate(RequestModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"publish_lead_seconds": 3600}]})

    selector: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9][a-z0-9-]{0,62}$",
        description="The new selector; mf<yyyymm> (with a letter if taken) when omitted.",
    )
    publish_lead_seconds: int = Field(
        default=3600,
        ge=0,
        le=4 * WEEK,
        description="How long the new record is published before MailU signs with it.",
    )
    overlap_seconds: int = Field(
        default=WEEK,
        ge=0,
        le=13 * WEEK,
        description="How long the old record stays published after the switch.",
    )


class DkimStateOut(ResponseModel):
    signing: str | None = Field(description="The selector MailU signs with.")
    next: str | None = Field(description="The selector of a rotation in progress.")
    switch_at: datetime | None
    retiring: str | None = Field(description="The previous selector, still published.")
    retire_at: datetime | None


class MailSecretsRotate(RequestModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"secrets": ["api_token"]}]})

    secrets: list[MailuSecret] = Field(
        default=["secret_key", "api_token", "admin_password"],
        min_length=1,
        description="Which of MailU's secrets to replace (new versions in Vault, then a "
        "re-render of mailu.env that restarts only the services using them).",
    )


class MailStackOut(ResponseModel):
    server_id: uuid.UUID
    mail_stack: str
    mail_hostname: str | None
    dkim: DkimStateOut
    status: dict[str, Any] | None = Field(
        description="The last status MailU reported (services, health, images, queue size)."
    )
    status_at: datetime | None
