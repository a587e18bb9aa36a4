"""The checks the sweep runs that are not probes: the agent link, MailU's status, backups and
TLS renewal findings, and DNS drift. Each returns ``Result``s (ok, failing or unknown)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.backups import service as backups
from control_plane.commands.models import FINAL_STATES, Command
from control_plane.dns import checker
from control_plane.dns.checks import authoritative_nameservers
from control_plane.dns.models import DnsProvider, DomainDns
from control_plane.dns.record import Record
from control_plane.dns.service import desired_records
from control_plane.errors import MailFleetError
from control_plane.health.models import HealthSchedule
from control_plane.health.results import Result, Severity
from control_plane.mail.models import MailDomain
from control_plane.schemas import Finding
from control_plane.servers.models import Server
from control_plane.settings import Settings
from control_plane.tls import service as tls

BACKUP_CODES = (
    "backup.none",
    "backup.stale",
    "backup.failed",
    "backup.check_failed",
    "backup.drill_failed",
)
MAILU_CHECKS = ("mailu.services", "mailu.queue")
CRITICAL_RECORDS = ("mx", "mail-host", "spf")  # drift there stops mail (and dkim:*)


def _ago(now: datetime, then: datetime) -> str:
    return f"{(now - then).total_seconds():.0f} s ago"


def agent_link(
    server: Server, schedule: HealthSchedule | None, now: datetime, unknown_after: timedelta
) -> Result:
    """Down (critical) when revoked, when its stream dropped and no heartbeat came since, or
    when heartbeats stopped; else ok."""
    threshold = f"a heartbeat within {unknown_after.total_seconds():g} s"
    beat = server.last_heartbeat_at
    observed = f"last heartbeat {beat.isoformat()}" if beat else "no heartbeat yet"

    def down(detail: str) -> Result:
        return Result("agent.link", "failing", "critical", detail, observed, threshold)

    if server.agent_state == "revoked":
        return down("the agent's certificate is revoked")
    dropped = schedule.agent_disconnected_at if schedule is not None else None
    if dropped is not None and (beat is None or beat <= dropped):
        return down(f"the agent's stream dropped {_ago(now, dropped)} ({dropped:%H:%M:%S} UTC)")
    if beat is None:
        return down("the agent has never connected")
    if now - beat > unknown_after:
        return down(f"no heartbeat from the agent since {_ago(now, beat)}")
    return Result("agent.link", "ok", "info", "the agent is online", observed, threshold)


def _from_findings(
    found: Sequence[Finding], codes: Sequence[str], check_of: Callable[[str], str]
) -> list[Result]:
    """One result per check the ``codes`` map to: failing with its failing findings, unknown
    with findings that could not decide, ok with none."""
    by_check: dict[str, list[Finding]] = {}
    for finding in found:
        by_check.setdefault(check_of(finding.code), []).append(finding)
    results = []
    for check in dict.fromkeys(check_of(code) for code in codes):
        findings = by_check.get(check, [])
        failing = [f for f in findings if f.state == "failing"]
        if failing:
            worst = "critical" if any(f.severity == "critical" for f in failing) else "warning"
            detail = "; ".join(f.message for f in failing)
            results.append(Result(check, "failing", worst, detail))  # type: ignore[arg-type]
        elif findings:
            detail = "; ".join(f.message for f in findings)
            results.append(Result(check, "unknown", findings[0].severity, detail))
        else:
            results.append(Result(check, "ok", "info", "no finding"))
    return results


async def backup_results(session: AsyncSession, server: Server, now: datetime) -> list[Result]:
    """``backup.stale``, ``backup.failed``, … from the backup findings. A server without a
    mail stack keeps nothing to back up, so having no policy is no finding for it."""
    policy = await backups.get_policy(session, server)
    if policy is None and server.mail_stack == "none":
        return []
    codes = BACKUP_CODES if policy is None or not policy.enabled else BACKUP_CODES[1:]
    return _from_findings(backups.findings(policy, now), codes, lambda code: code)


async def tls_results(session: AsyncSession, server: Server) -> list[Result]:
    """``tls.renewal``: the certificate's renewals keep failing (only where MailU serves it)."""
    if server.mail_stack != "mailu":
        return []
    found = await tls.findings(session, server.id)
    return _from_findings(found, ("tls.renewal_failed",), lambda code: "tls.renewal")


async def mailu_status_pending(session: AsyncSession, server: Server) -> Command | None:
    """The ``mailu.status`` still unanswered, if one is (then no second one is queued)."""
    return await session.scalar(
        select(Command)
        .where(
            Command.server_id == server.id,
            Command.kind == "mailu.status",
            Command.state.not_in(FINAL_STATES),
        )
        .order_by(Command.created_at)
        .limit(1)
    )


def _mailu_unknown(detail: str) -> list[Result]:
    return [Result(check, "unknown", "warning", detail) for check in MAILU_CHECKS]


def mailu_unanswered(command: Command, now: datetime) -> list[Result]:
    detail = f"the agent has not answered mailu.status (queued {_ago(now, command.created_at)})"
    return _mailu_unknown(detail)


def mailu_results(command: Command, queue_threshold: int) -> list[Result]:
    """``mailu.services`` and ``mailu.queue`` from a settled ``mailu.status``."""
    if command.state != "succeeded" or command.result is None:
        why = command.error or command.state
        detail = f"mailu.status {command.state}: {why}"
        return _mailu_unknown(detail)
    try:
        status = json.loads(command.result)
        services: dict[str, dict[str, str]] = dict(status.get("services") or {})
    except (ValueError, TypeError, AttributeError):
        detail = "mailu.status answered something that is not a status"
        return _mailu_unknown(detail)
    if not status.get("installed", False):
        return [
            Result("mailu.services", "failing", "critical", "MailU is not installed"),
            Result("mailu.queue", "unknown", "warning", "MailU is not installed"),
        ]
    return [
        _services(services, bool(status.get("healthy"))),
        _queue(status.get("queue_size"), queue_threshold),
    ]


def _services(services: dict[str, dict[str, str]], healthy: bool) -> Result:
    down = sorted(n for n, s in services.items() if s.get("state") != "running")
    sick = sorted(n for n, s in services.items() if s.get("health") == "unhealthy")
    starting = sorted(n for n, s in services.items() if s.get("health") == "starting")
    observed = f"{len(services) - len(down) - len(sick)}/{len(services)} services up"
    threshold = "every service running and healthy"
    problems = []
    if down:
        states = ", ".join(f"{n} ({services[n].get('state', '?')})" for n in down)
        problems.append(f"not running: {states}")
    if sick:
        problems.append(f"unhealthy: {', '.join(sick)}")
    if problems:
        return Result(
            "mailu.services", "failing", "critical", "; ".join(problems), observed, threshold
        )
    if starting:
        return Result(
            "mailu.services",
            "failing",
            "warning",
            f"still starting: {', '.join(starting)}",
            observed,
            threshold,
        )
    if not healthy:
        return Result(
            "mailu.services",
            "failing",
            "critical",
            "a service of the MailU project is missing",
            observed,
            threshold,
        )
    return Result(
        "mailu.services",
        "ok",
        "info",
        "every MailU service is running and healthy",
        observed,
        threshold,
    )


def _queue(size: Any, threshold: int) -> Result:
    limit = f"at most {threshold} messages"
    if not isinstance(size, int):
        return Result(
            "mailu.queue",
            "unknown",
            "warning",
            "the queue could not be read (the smtp service is not running)",
            None,
            limit,
        )
    observed = f"{size} messages"
    if size > threshold:
        return Result(
            "mailu.queue",
            "failing",
            "warning",
            f"{size} messages wait in the mail queue",
            observed,
            limit,
        )
    return Result("mailu.queue", "ok", "info", f"{size} messages in the queue", observed, limit)


@dataclass
class ZoneCheck:
    """What one domain's drift check needs, read before the network work starts."""

    domain: str
    zone: str
    provider: DnsProvider
    records: list[Record]
    problem: str | None = None  # why the desired records could not be computed


async def dns_inputs(session: AsyncSession, server: Server) -> list[ZoneCheck]:
    """The server's domains whose DNS MailFleet publishes, with their desired records."""
    rows = (
        await session.execute(
            select(MailDomain, DomainDns, DnsProvider)
            .join(DomainDns, DomainDns.domain_id == MailDomain.id)
            .join(DnsProvider, DnsProvider.id == DomainDns.provider_id)
            .where(MailDomain.server_id == server.id)
            .order_by(MailDomain.name)
        )
    ).all()
    found = []
    for domain, row, provider in rows:
        try:
            records = await desired_records(session, domain, row)
        except MailFleetError as exc:
            found.append(ZoneCheck(domain.name, row.zone, provider, [], exc.detail))
            continue
        inside = [r for r in records if r.name == row.zone or r.name.endswith("." + row.zone)]
        found.append(ZoneCheck(domain.name, row.zone, provider, inside))
    return found


def _record_severity(record: Record) -> Severity:
    critical = record.purpose in CRITICAL_RECORDS or record.purpose.startswith("dkim")
    return "critical" if critical else "warning"


async def dns_drift(zones: Sequence[ZoneCheck], settings: Settings) -> list[Result]:
    """``dns.drift``: what the authoritative servers publish against the desired records.
    Missing or different records fail (critical for MX, the mail host, SPF and DKIM); a
    lagging secondary is fine (it catches up by itself); no answer is unknown."""
    if not zones:
        return []
    wrong: list[tuple[str, Severity]] = []
    unknown: list[str] = []
    matched = 0
    for zone in zones:
        if zone.problem is not None:
            unknown.append(f"{zone.domain}: {zone.problem}")
            continue
        if not zone.records:
            continue
        try:
            servers = await authoritative_nameservers(zone.provider, zone.zone, settings)
            report = await checker.check(
                zone.records,
                servers,
                (),
                zones=[zone.zone],
                timeout=settings.dns_lookup_timeout_seconds,
            )
        except (MailFleetError, checker.AuthoritativeLookupError, OSError) as exc:
            unknown.append(f"{zone.domain}: {getattr(exc, 'detail', None) or exc}")
            continue
        for record in report.records:
            status = record.status
            where = f"{record.record.type} {record.record.name}"
            if status in (checker.Status.MISSING, checker.Status.DIFFERENT):
                wrong.append((f"{where} is {status.value}", _record_severity(record.record)))
            elif status is checker.Status.ERROR:
                unknown.append(f"{where}: no usable answer")
            else:
                matched += 1
    observed = f"{matched} record sets as desired"
    if wrong:
        severity: Severity = "critical" if any(s == "critical" for _, s in wrong) else "warning"
        detail = "; ".join(text for text, _ in wrong)
        return [
            Result("dns.drift", "failing", severity, detail, observed, "every record as desired")
        ]
    if unknown:
        return [Result("dns.drift", "unknown", "warning", "; ".join(unknown), observed)]
    return [Result("dns.drift", "ok", "info", "every record is published as desired", observed)]
