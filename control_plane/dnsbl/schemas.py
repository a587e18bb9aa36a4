"""What the DNSBL API takes and answers."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Literal

from pydantic import ConfigDict, Field

from control_plane.dnsbl.catalog import DnsblList
from control_plane.dnsbl.models import DelistRequest, DnsblCheck, DnsblResult
from control_plane.schemas import RequestModel, ResponseModel

State = Literal["listed", "clean", "unknown"]


class ResultOut(ResponseModel):
    list: str = Field(description="The list's zone (e.g. zen.spamhaus.org).")
    name: str
    kind: Literal["ip", "domain"]
    major: bool
    weight: float
    state: State = Field(description="listed, clean, or unknown (could not tell: see reason).")
    code: str | None = Field(description="The return code(s), e.g. 127.0.0.2 (comma-separated).")
    meaning: str | None = Field(description="What the code means on this list.")
    reason: str | None = Field(
        description="Listed: the list's TXT reason; unknown: why the lookup could not tell."
    )
    checked_at: datetime | None
    changed_at: datetime | None
    removal_url: str | None


class CheckOut(ResponseModel):
    checked_at: datetime
    listing: State
    score: int | None
    listed: list[str] = Field(description="Zones that listed it.")
    unknown: list[str] = Field(description="Zones that could not tell (the rest were clean).")


class DelistOut(ResponseModel):
    id: uuid.UUID
    ip: str
    list: str
    name: str | None
    state: Literal["opened", "submitted", "cleared", "stale"]
    removal_url: str | None
    instructions: str | None
    detail: str
    opened_by: str | None
    opened_at: datetime
    submitted_at: datetime | None
    next_check_at: datetime | None = Field(description="Its next recheck (once submitted).")
    last_checked_at: datetime | None
    closed_at: datetime | None


class _Reputation(ResponseModel):
    score: int | None = Field(
        description="0-100: 100 × (1 − weight of lists listing it / weight of lists that "
        "answered); null: no list answered (or not checked yet)."
    )
    listing: State | None = Field(
        description="listed if any list lists it, else unknown if any could not tell, else "
        "clean; null: not checked yet."
    )
    checked_at: datetime | None
    next_check_at: datetime | None
    results: list[ResultOut]
    history: list[CheckOut] = Field(description="Its latest checks, newest first.")


class ReputationOut(_Reputation):
    ip: str
    delist_requests: list[DelistOut]


class DomainReputationOut(_Reputation):
    domain_id: uuid.UUID
    domain: str


class DelistIn(RequestModel):
    list: str = Field(min_length=1, max_length=200, description="The list's zone.")

    model_config = ConfigDict(json_schema_extra={"examples": [{"list": "zen.spamhaus.org"}]})


class DelistPage(ResponseModel):
    items: list[DelistOut]


def result_out(dnsbl: DnsblList, row: DnsblResult | None) -> ResultOut:
    """A catalog list's latest result for the subject (unknown until first looked up)."""
    return ResultOut(
        list=dnsbl.zone,
        name=dnsbl.name,
        kind=dnsbl.kind,
        major=dnsbl.major,
        weight=dnsbl.weight,
        state=row.state if row is not None else "unknown",
        code=row.code if row is not None else None,
        meaning=row.meaning if row is not None else None,
        reason=row.reason if row is not None else "not looked up yet",
        checked_at=row.checked_at if row is not None else None,
        changed_at=row.changed_at if row is not None else None,
        removal_url=dnsbl.removal_url,
    )


def check_out(row: DnsblCheck) -> CheckOut:
    return CheckOut(
        checked_at=row.checked_at,
        listing=row.listing,
        score=row.score,
        listed=json.loads(row.listed),
        unknown=json.loads(row.unknown),
    )


def delist_out(row: DelistRequest, dnsbl: DnsblList | None) -> DelistOut:
    return DelistOut(
        id=row.id,
        ip=row.address,
        list=row.zone,
        name=dnsbl.name if dnsbl else None,
        state=row.state,
        removal_url=dnsbl.removal_url if dnsbl else None,
        instructions=dnsbl.how_to_remove() if dnsbl else None,
        detail=row.detail,
        opened_by=row.opened_by,
        opened_at=row.opened_at,
        submitted_at=row.submitted_at,
        next_check_at=row.next_check_at,
        last_checked_at=row.last_checked_at,
        closed_at=row.closed_at,
    )
