"""Mail counts in and out: the agent's ``mail.stats`` rows, and the per-day figures the API
shows for an address or a mail domain."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class AgentCount(BaseModel):
    """One row of a ``mail.stats`` result: whole-day totals for one key."""

    model_config = ConfigDict(extra="ignore")

    day: date
    source_ip: str = Field(min_length=1, max_length=45)
    sender_domain: str = Field(max_length=253)
    sent: int = Field(ge=0, le=1_000_000_000)
    deferred: int = Field(ge=0, le=1_000_000_000)
    bounced: int = Field(ge=0, le=1_000_000_000)


class MailFigures(BaseModel):
    """``sent``: delivered; ``deferred``: attempts that failed for now (the message stays
    queued and is tried again, so one message may defer several times); ``bounced``:
    permanent failures (including messages that expired in the queue). ``bounce_rate`` is
    bounced / (sent + bounced), null when nothing was sent or bounced."""

    sent: int = 0
    deferred: int = 0
    bounced: int = 0
    bounce_rate: float | None = None


class SenderDomainFigures(MailFigures):
    sender_domain: str = Field(
        description="The envelope sender's domain; '<>' for bounce notices (null sender), "
        "'?' when the log read did not hold the message's sender."
    )


class SourceIpFigures(MailFigures):
    source_ip: str = Field(description="The address the mail left from ('unknown': not known).")


class IpMailDay(MailFigures):
    day: date
    by_sender_domain: list[SenderDomainFigures]


class DomainMailDay(MailFigures):
    day: date
    by_source_ip: list[SourceIpFigures]


class ReportingOut(BaseModel):
    """Whether these figures are measured: ``reporting`` (the agent reads Postfix's log),
    ``no_log`` (it finds none: no figures is not zero mail), ``failing`` (its last report
    was an error), ``stale`` (no report for three intervals), ``never``."""

    state: Literal["reporting", "no_log", "failing", "stale", "never"]
    reported_at: datetime | None = None
    failed_at: datetime | None = None
    error: str | None = None


class IpMailStatsOut(BaseModel):
    ip: str
    server_id: uuid.UUID
    reporting: ReportingOut
    first_day: date
    last_day: date
    totals: MailFigures
    days: list[IpMailDay] = Field(description="Days with mail, oldest first (UTC days).")


class DomainMailStatsOut(BaseModel):
    domain_id: uuid.UUID
    domain: str
    server_id: uuid.UUID
    reporting: ReportingOut
    first_day: date
    last_day: date
    totals: MailFigures
    days: list[DomainMailDay] = Field(description="Days with mail, oldest first (UTC days).")
