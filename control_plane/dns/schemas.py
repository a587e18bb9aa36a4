from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from control_plane.schemas import Finding, RequestModel, ResponseModel

TSIG_ALGORITHMS = ("hmac-sha256", "hmac-sha384", "hmac-sha512", "hmac-sha224", "hmac-sha1")
SECRET_FIELDS = {
    "rfc2136": ("key_secret",),
    "cloudflare": ("token",),
    "route53": ("access_key_id", "secret_access_key"),
}


class ProviderCreate(RequestModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "knot-primary",
                    "kind": "rfc2136",
                    "settings": {"host": "192.0.2.53", "port": 53, "key_name": "mailfleet",
                                 "key_algorithm": "hmac-sha256"},
                    "secret": {"key_secret": "c2VjcmV0LXRzaWcta2V5LWJhc2U2NA=="},
                }
            ]
        }
    )  # fmt: skip

    name: str = Field(min_length=1, max_length=100)
    tenant_id: uuid.UUID | None = Field(default=None, description="Admin keys name the tenant.")
    kind: Literal["rfc2136", "cloudflare", "route53"]
    settings: dict[str, Any] = Field(
        default_factory=dict,
        description="rfc2136: host, port, key_name, key_algorithm; cloudflare: account_id.",
    )
    secret: dict[str, str] = Field(
        description="rfc2136: key_secret (base64 TSIG); cloudflare: token; route53: "
        "access_key_id, secret_access_key. Kept in Vault, never shown again."
    )

    @model_validator(mode="after")
    def complete(self) -> ProviderCreate:
        missing = [f for f in SECRET_FIELDS[self.kind] if not self.secret.get(f)]
        if missing:
            raise ValueError(f"secret needs {', '.join(missing)} for {self.kind}")
        if self.kind == "rfc2136":
            host, port = self.settings.get("host"), self.settings.get("port", 53)
            if not isinstance(host, str) or not host:
                raise ValueError("settings.host: the primary server's address")
            if not isinstance(port, int) or not 1 <= port <= 65535:
                raise ValueError("settings.port: 1–65535")
            if self.settings.get("key_algorithm", "hmac-sha256") not in TSIG_ALGORITHMS:
                raise ValueError(f"settings.key_algorithm: one of {', '.join(TSIG_ALGORITHMS)}")
            if not self.settings.get("key_name"):
                raise ValueError("settings.key_name: the TSIG key's name")
        return self


class ProviderOut(ResponseModel):
    id: uuid.UUID
    tenant_id: uuid.UUID
    name: str
    kind: str
    settings: dict[str, Any]
    created_at: datetime


class DomainDnsIn(RequestModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"provider_id": "01a20000-0000-7000-8000-000000000002",
                 "dmarc_rua": ["dmarc@example.net"]}
            ]
        }
    )  # fmt: skip

    provider_id: uuid.UUID
    zone: str | None = Field(default=None, description="Default: the domain itself.")
    dmarc_policy: Literal["none", "quarantine", "reject"] = "none"
    dmarc_step_days: int = Field(
        default=0,
        ge=0,
        le=365,
        description="Move the DMARC policy one step (none → quarantine → reject) after this "
        "many days at the current one; 0: only by hand. Watch the rua reports meanwhile.",
    )
    dmarc_rua: list[str] = Field(default_factory=list, max_length=10)
    tls_rpt_rua: list[str] = Field(default_factory=list, max_length=10)
    spf_includes: list[str] = Field(
        default_factory=list, max_length=9, description="Other senders, e.g. _spf.google.com."
    )
    mta_sts_mode: Literal["none", "testing", "enforce"] = Field(
        default="none",
        description="MTA-STS (RFC 8461): the policy is served by MailU's front at "
        "https://mta-sts.<domain>/.well-known/mta-sts.txt; start with testing.",
    )
    caa_issuers: list[str] | None = Field(
        default=None,
        max_length=10,
        description="CAs allowed to issue for the domain (CAA); default: MailFleet's ACME CA. "
        "Add the CA your web site uses.",
    )


class RecordOut(ResponseModel):
    name: str
    type: str
    ttl: int
    values: list[str]
    purpose: str
    status: Literal["published", "missing", "different"] | None = None
    published_values: list[str] | None = None


class ChangeOut(ResponseModel):
    action: Literal["create", "update", "delete"]
    name: str
    type: str
    ttl: int
    values: list[str]
    previous: list[str]


class DomainDnsOut(ResponseModel):
    domain_id: uuid.UUID
    provider_id: uuid.UUID
    zone: str
    records: list[RecordOut] = Field(description="Desired, each with what the provider serves.")


class ApplyOut(ResponseModel):
    zone: str
    applied: bool
    changes: list[ChangeOut]


class FindingOut(Finding):
    fix: str | None = Field(description="The record to set, in zone-file form.")
    guidance: str | None = Field(description="How to set it at this DNS provider.")


class DiagnosisOut(ResponseModel):
    domain: str
    state: Literal["ok", "failing", "unknown"] = Field(
        description="failing: a critical finding; unknown: none, but some check could not run "
        "(a lookup failed); ok: every check ran and none is critical."
    )
    ok: bool = Field(description="state is ok.")
    findings: list[FindingOut]
    spf: dict[str, Any]
    dmarc: dict[str, Any]


class CheckOut(ResponseModel):
    id: uuid.UUID
    domain_id: uuid.UUID
    started_at: datetime
    finished_at: datetime
    propagated: bool
    report: dict[str, Any] = Field(
        description="Per record and server: matching, stale, missing, different or error, the "
        "serial each server has, and an ETA from the zone's TTLs."
    )
