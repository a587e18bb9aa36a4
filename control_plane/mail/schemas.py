from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

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


class DkimRecordOut(ResponseModel):
    name: str = Field(description="The TXT record's owner name.")
    value: str = Field(description="The TXT record's value (v=DKIM1; k=rsa; p=…).")


class DomainOut(ResponseModel):
    id: uuid.UUID
    tenant_id: uuid.UUID
    server_id: uuid.UUID
    name: str
    dkim_selector: str
    dkim_record: DkimRecordOut
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


class CredentialsOut(ResponseModel):
    username: str
    password: str = Field(description="Shown once; rotate for a new one.")
    smtp_host: str | None
    smtp_port: int = 587
    imap_port: int = 993
