"""Storing check results: the flap guard, unknown counting, history and incident signals.

Every check (the sweep's, and asynchronous ones arriving as agent command results) ends in
``record_results``. What it stores is the *confirmed* state: a check turning failing is
only a pending change until a re-check at least ``health_flap_seconds`` later agrees (the
server is made due for it); a check returning to ok counts at once. Unknown (could not
check) shows as unknown at once, and ``health_unknowns_critical`` of them in a row make it
critical. Confirmed changes go to the history and, as signals, to the incidents.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.configured import Configured
from control_plane.db.lookup import get_by_id
from control_plane.health import schedule
from control_plane.health.models import HealthChange, HealthCheck, HealthSchedule
from control_plane.health.results import Result
from control_plane.health.schemas import CheckOut, HealthOut, PendingOut, ResultOut, RunOut
from control_plane.incidents import service as incidents
from control_plane.incidents.signals import Signal, server_signal
from control_plane.servers.models import Server
from control_plane.settings import Settings

log = logging.getLogger(__name__)
Overall = Literal["ok", "warning", "critical", "unknown"]
DETAIL_CHARS = 4000
VALUE_CHARS = 500


@dataclass(frozen=True)
class Rules:
    """The settings ``record_results`` follows (read once per process)."""

    flap: timedelta
    unknowns_critical: int
    interval: timedelta
    queue_threshold: int

    @classmethod
    def of(cls, settings: Settings) -> Rules:
        return cls(
            flap=timedelta(seconds=settings.health_flap_seconds),
            unknowns_critical=settings.health_unknowns_critical,
            interval=timedelta(seconds=settings.health_interval_seconds),
            queue_threshold=settings.mailu_queue_threshold,
        )


_rules = Configured(Rules.of)


def configure(settings: Settings) -> None:
    """Judge results that arrive without settings (agent command results) by these;
    ``serve`` calls it."""
    _rules.configure(settings)


def current_rules() -> Rules:
    """The rules ``configure`` set (the environment's settings before it is called)."""
    return _rules.current()


def _clip(value: str | None, size: int) -> str | None:
    return value[:size] if value is not None else None


def _confirm(row: HealthCheck, state: str, severity: str, result: Result) -> None:
    row.state, row.severity = state, severity
    row.detail = _clip(result.detail, DETAIL_CHARS) or ""
    row.observed = _clip(result.observed, VALUE_CHARS)
    row.threshold = _clip(result.threshold, VALUE_CHARS)
    row.pending_state = row.pending_severity = row.pending_detail = None
    row.pending_since = None


def _apply(row: HealthCheck, result: Result, now: datetime, rules: Rules) -> bool:
    """Fold one result into the row; True when a re-check must be scheduled."""
    row.last_run_at = now
    if result.state == "ok":
        row.unknowns = 0
        _confirm(row, "ok", "info", result)
        return False
    if result.state == "unknown":
        row.unknowns += 1
        severity = "critical" if row.unknowns >= rules.unknowns_critical else result.severity
        _confirm(row, "unknown", severity, result)  # a pending failure is not confirmed by it
        return False
    row.unknowns = 0
    already = row.state == "failing"
    waited = row.pending_since is not None and now - row.pending_since >= rules.flap
    if already or waited or rules.flap <= timedelta(0):
        _confirm(row, "failing", result.severity, result)
        return False
    if row.pending_since is None:
        row.pending_since = now
    row.pending_state, row.pending_severity = "failing", result.severity
    row.pending_detail = _clip(result.detail, DETAIL_CHARS)
    return True


def _summary(server: Server, row: HealthCheck) -> str:
    return f"{server.name}: {row.check} {row.state} ({row.severity}): {row.detail}"[:1000]


def _signal(server: Server, row: HealthCheck, since: datetime | None = None) -> Signal:
    state, severity = row.state, row.severity
    return server_signal(server, row.check, state, severity, _summary(server, row), since)  # type: ignore[arg-type]


async def record_results(
    session: AsyncSession,
    server_id: uuid.UUID,
    results: Sequence[Result],
    now: datetime,
    *,
    rules: Rules | None = None,
) -> None:
    """Store ``results`` of one server as of ``now`` (in the caller's transaction): flap
    guard, unknown counting, history, and signals to the incidents for confirmed states
    (every change, every still-failing or critical-unknown check: it keeps its incident
    open, and every ok check whose incident is still open: a resolve lost once is sent
    again)."""
    if not results:
        return
    server = await session.get(Server, server_id)
    if server is None:
        return  # deleted meanwhile: nothing to watch
    rules = rules or current_rules()
    rows = await _rows_of(session, server_id, [r.check for r in results])
    signals: list[Signal] = []
    steady_ok: list[HealthCheck] = []
    recheck: list[str] = []
    for result in {r.check: r for r in results}.values():  # the last result of a check wins
        row = rows.get(result.check)
        previous: tuple[str, str] | None = None
        if row is None:
            row = rows[result.check] = _first_row(server, result.check, now)
            session.add(row)
        else:
            previous = (row.state, row.severity)
        first_seen = row.pending_since  # a failure the flap guard held back, since then
        if _apply(row, result, now, rules):
            recheck.append(row.check)
        current = (row.state, row.severity)
        if current != previous:
            row.changed_at = now
            session.add(_change(row, previous, now))
        if current != previous or row.state == "failing" or row.severity == "critical":
            confirmed = row.state == "failing" and previous is not None and previous[0] != "failing"
            signals.append(_signal(server, row, first_seen if confirmed else None))
        elif row.state == "ok":
            steady_ok.append(row)
    if recheck:
        at = now + rules.flap
        dns_too = {"next_dns_at": at} if "dns.drift" in recheck else {}
        await schedule.due_at(session, server, at, **dns_too)
    await session.flush()
    if steady_ok:
        still_open = await incidents.open_checks(
            session, server.tenant_id, "server", str(server.id)
        )
        signals += [_signal(server, row) for row in steady_ok if row.check in still_open]
    if signals:
        await _signal_incidents(session, server_id, signals, now)


async def _rows_of(
    session: AsyncSession, server_id: uuid.UUID, checks: Sequence[str]
) -> dict[str, HealthCheck]:
    """The stored rows of these checks of the server, by check, locked: the sweep and an
    agent command's result (``mailu.status``) may fold results into the same row at once,
    and each must read what the other wrote (unlocked, one kept the other's state with its
    own severity and detail). Locked in check order, so two writers never deadlock."""
    found = await session.scalars(
        select(HealthCheck)
        .where(HealthCheck.server_id == server_id)
        .where(HealthCheck.check.in_(checks))
        .order_by(HealthCheck.check)
        .with_for_update()
    )
    return {row.check: row for row in found.all()}


def _first_row(server: Server, check: str, now: datetime) -> HealthCheck:
    """A check never stored before: unknown until its first result is confirmed."""
    return HealthCheck(
        tenant_id=server.tenant_id,
        server_id=server.id,
        check=check[:200],
        state="unknown",
        severity="info",
        detail="awaiting its first confirmed result",
        last_run_at=now,
        changed_at=now,
        unknowns=0,
    )


async def _signal_incidents(
    session: AsyncSession, server_id: uuid.UUID, signals: list[Signal], now: datetime
) -> None:
    """Hand the signals on in a savepoint, so the results stay stored even if the incidents
    cannot take them now: a still-failing check signals again at its next run, and so does
    a check back to ok while its incident is open."""
    try:
        async with session.begin_nested():
            await incidents.observe(session, signals, now)
    except Exception:
        log.exception("incidents could not take %d signals of server %s", len(signals), server_id)


def _change(row: HealthCheck, previous: tuple[str, str] | None, now: datetime) -> HealthChange:
    return HealthChange(
        tenant_id=row.tenant_id,
        server_id=row.server_id,
        check=row.check,
        state=row.state,
        severity=row.severity,
        previous_state=previous[0] if previous else None,
        previous_severity=previous[1] if previous else None,
        detail=row.detail,
        observed=row.observed,
        threshold=row.threshold,
        at=now,
    )


def overall(rows: Sequence[HealthCheck]) -> Overall:
    """critical if any check is critical (failing, or unknown too long); warning if any
    fails; unknown if any could not be checked (or none ever ran); else ok."""
    if any(r.severity == "critical" and r.state != "ok" for r in rows):
        return "critical"
    if any(r.state == "failing" for r in rows):
        return "warning"
    if not rows or any(r.state == "unknown" for r in rows):
        return "unknown"
    return "ok"


async def checks_of(session: AsyncSession, server_id: uuid.UUID) -> list[HealthCheck]:
    return list(
        (
            await session.scalars(
                select(HealthCheck)
                .where(HealthCheck.server_id == server_id)
                .order_by(HealthCheck.check)
            )
        ).all()
    )


async def overall_by_server(
    session: AsyncSession, server_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, Overall]:
    """``overall`` of each server's checks, for many servers at once (a page of the fleet)."""
    rows: dict[uuid.UUID, list[HealthCheck]] = {server_id: [] for server_id in server_ids}
    for row in await session.scalars(
        select(HealthCheck).where(HealthCheck.server_id.in_(server_ids))
    ):
        rows[row.server_id].append(row)
    return {server_id: overall(checks) for server_id, checks in rows.items()}


async def history(
    session: AsyncSession,
    server_id: uuid.UUID,
    start: datetime | None,
    end: datetime | None,
    limit: int,
) -> list[HealthChange]:
    """The server's changes in [start, end), oldest first."""
    stmt = select(HealthChange).where(HealthChange.server_id == server_id)
    if start is not None:
        stmt = stmt.where(HealthChange.at >= start)
    if end is not None:
        stmt = stmt.where(HealthChange.at < end)
    stmt = stmt.order_by(HealthChange.at, HealthChange.id).limit(limit)
    return list((await session.scalars(stmt)).all())


async def require_server(session: AsyncSession, server_id: uuid.UUID) -> Server:
    """The server, or the 404 the API gives (the CLI's health command shares it)."""
    return await get_by_id(session, Server, server_id, "server")


def check_out(row: HealthCheck) -> CheckOut:
    pending = None
    if row.pending_state is not None and row.pending_since is not None:
        pending = PendingOut(
            state=row.pending_state,
            severity=row.pending_severity or "warning",
            detail=row.pending_detail,
            since=row.pending_since,
        )
    return CheckOut(
        check=row.check,
        state=row.state,
        severity=row.severity,
        detail=row.detail,
        observed=row.observed,
        threshold=row.threshold,
        last_run_at=row.last_run_at,
        changed_at=row.changed_at,
        unknowns_in_a_row=row.unknowns,
        pending=pending,
    )


async def health_out(session: AsyncSession, server: Server) -> HealthOut:
    """The server's health as the API and the CLI show it."""
    rows = await checks_of(session, server.id)
    plan = await session.get(HealthSchedule, server.id)
    return HealthOut(
        server_id=server.id,
        overall=overall(rows),
        next_run_at=plan.next_run_at if plan is not None else None,
        last_run_at=plan.last_finished_at if plan is not None else None,
        checks=[check_out(row) for row in rows],
    )


def run_out(health: HealthOut, results: Sequence[Result]) -> RunOut:
    """A run's answer: the confirmed states after it, and what it found."""
    return RunOut(
        **health.model_dump(), results=[ResultOut(**asdict(result)) for result in results]
    )
