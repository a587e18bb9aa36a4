"""``mail.stats`` results: store the days they carry, then judge today's bounce rate of each
address that sent.

An address whose bounce share (bounced / (sent + bounced)) passes
``MAILFLEET_REPUTATION_BOUNCE_RATE`` over at least ``MAILFLEET_REPUTATION_BOUNCE_MIN_MESSAGES``
messages today is failing its ``ip.bounces`` check (an incident), and is paused when
``MAILFLEET_REPUTATION_AUTO_PAUSE`` names ``bounces`` (once a day: a user who resumes it is
not overruled at the next report); at or under the rate, the check is ok. An address with
fewer messages today gets no verdict (too few to judge: an incident open since yesterday stays
open rather than resolved by a day's first few messages). A report that failed, timed out or
was not JSON changes nothing: the stored figures stay what they were.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.commands import handlers
from control_plane.commands.models import Command
from control_plane.configured import Configured
from control_plane.db.base import utcnow
from control_plane.incidents import service as incidents
from control_plane.incidents.signals import Signal
from control_plane.ips import service as ips
from control_plane.ips.models import IpAddress, IpEvent
from control_plane.mailstats import service
from control_plane.mailstats.schemas import AgentCount
from control_plane.servers.models import Server
from control_plane.settings import Settings

log = logging.getLogger(__name__)

KIND = "mail.stats"
REPORT_KIND = "mail_counts"  # the capability, and the report its agents send unasked
BOUNCES_CHECK = "ip.bounces"
BOUNCES_PAUSE = "bounce rate "  # how the reason of a pause for bounces starts
_rows = TypeAdapter(list[AgentCount])


@dataclass(frozen=True)
class Rules:
    bounce_rate: float
    min_messages: int
    auto_pause: bool

    @classmethod
    def of(cls, settings: Settings) -> Rules:
        return cls(
            bounce_rate=settings.reputation_bounce_rate,
            min_messages=settings.reputation_bounce_min_messages,
            auto_pause=settings.auto_pauses_on("bounces"),
        )


_rules = Configured(Rules.of)


def configure(settings: Settings) -> None:
    """Judge results that arrive without settings (agent command results) by these;
    ``serve`` calls it."""
    _rules.configure(settings)


def current_rules() -> Rules:
    """The rules ``configure`` set (the environment's settings before it is called)."""
    return _rules.current()


@dataclass(frozen=True)
class Report:
    counts: list[AgentCount]
    log_found: bool
    lines_read: int


def parse_result(text: str | None) -> Report | None:
    """What a result says, or None when it is not a ``mail.stats`` answer."""
    try:
        return parse_report(json.loads(text or ""))
    except ValueError:
        return None


def parse_report(data: object) -> Report | None:
    """What a ``mail.stats`` answer or a pushed report (the same fields) says; None when it
    is neither."""
    try:
        if not isinstance(data, dict):
            return None
        found = data.get("log")
        log_info: dict[str, Any] = found if isinstance(found, dict) else {}
        return Report(
            counts=_rows.validate_python(data["days"]),
            log_found=bool(log_info.get("found", True)),
            lines_read=int(log_info.get("lines_read") or 0),
        )
    except (ValueError, KeyError, TypeError, ValidationError):
        return None


async def record(session: AsyncSession, command: Command) -> None:
    """A ``mail.stats`` command settled (agents that do not send reports of their own)."""
    report = parse_result(command.result) if command.state == "succeeded" else None
    error = command.error or f"{command.state}: not a mail.stats answer"
    await store(session, command.server_id, report, error)


async def record_pushed(session: AsyncSession, server_id: uuid.UUID, data: dict[str, Any]) -> None:
    """A report the agent sent on its stream (capability ``mail_counts``)."""
    await store(session, server_id, parse_report(data), "the agent's report was not understood")


async def store(
    session: AsyncSession, server_id: uuid.UUID, report: Report | None, error: str
) -> None:
    """Replace the days a report carries and judge today's bounces; a report that could not
    be read is noted as a failure and changes no figure."""
    server = await session.get(Server, server_id)
    if server is None:
        return
    now = utcnow()
    if report is None:
        await service.note_failure(session, server, now, error)
        return
    await service.replace_days(session, server, report.counts)
    await service.note_report(session, server, now, report.log_found, report.lines_read)
    await check_bounces(session, server, now.date(), now, current_rules())


def _percent(rate: float) -> str:
    return f"{rate * 100:.1f}".rstrip("0").rstrip(".") + " %"


async def check_bounces(
    session: AsyncSession, server: Server, day: date, now: datetime, rules: Rules
) -> list[IpAddress]:
    """Signal ``ip.bounces`` for each live address of ``server`` with enough mail on ``day``
    to judge; pause those over the threshold when the setting says so. Returns the addresses
    failing."""
    totals = await service.totals_by_source(session, server.id, day)
    failing: list[IpAddress] = []
    for ip in await ips.live_ips(session, server.id):
        sent, _, bounced = totals.get(ip.address, (0, 0, 0))
        total = service.messages(sent, bounced)
        if total < rules.min_messages:
            continue  # too few to judge: neither failing nor ok (an open incident stays)
        rate = service.bounce_rate(sent, bounced) or 0.0
        detail = f"{BOUNCES_PAUSE}{_percent(rate)} over {total} messages on {day.isoformat()}"
        over = rate > rules.bounce_rate
        limit = f"(limit {_percent(rules.bounce_rate)} over at least {rules.min_messages})"
        signal = Signal(
            tenant_id=ip.tenant_id,
            subject_kind="ip",
            subject_id=ip.address,
            check=BOUNCES_CHECK,
            state="failing" if over else "ok",
            severity="warning",
            summary=f"{ip.address}: {detail} {limit}",
            server_id=ip.server_id,
        )
        await incidents.observe(session, [signal], now)
        if over:
            failing.append(ip)
            if rules.auto_pause and not await _bounces_paused(session, ip, day):
                await ips.pause(session, ip, detail, ips.AUTO, now)
    return failing


async def _bounces_paused(session: AsyncSession, ip: IpAddress, day: date) -> bool:
    """Whether bounces paused ``ip`` already on ``day``: once a day at most, so a user who
    resumes it (knowing why) is not overruled at the agent's next report."""
    start = datetime.combine(day, time.min, tzinfo=UTC)
    found = await session.scalar(
        select(IpEvent.id)
        .where(
            IpEvent.ip_id == ip.id,
            IpEvent.kind == "paused",
            IpEvent.actor == ips.AUTO,
            IpEvent.at >= start,
            IpEvent.detail.startswith(BOUNCES_PAUSE),
        )
        .limit(1)
    )
    return found is not None


handlers.register_result_handler(KIND, record)
handlers.register_report_handler(REPORT_KIND, record_pushed)
