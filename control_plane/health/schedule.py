"""When each server's checks are due, and which replica runs them.

Each ready server has a slot in the interval: a stable offset from its id, so 10,000
servers spread over the 5 minutes instead of all at once, and a restart keeps the spread.
A replica claims due servers in a short transaction (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL; SQLite has one writer), moves them to their next slot and takes a lease on
them; the checks run after commit, and the lease ends when their results are stored.
Anything may make a server due sooner (``due_at``): the flap guard's re-check, an agent's
stream dropping, a run asked for through the API.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.leases import unleased
from control_plane.db.writes import insert_for
from control_plane.health.models import HealthCheck, HealthSchedule
from control_plane.servers.models import Server
from control_plane.settings import Settings

CHECKED_STATES = ("ready",)  # provisioning states whose servers are watched
_wakers: list[Callable[[], None]] = []


@dataclass(frozen=True)
class Claim:
    """A claimed server, as its checks need it (read in the claim, used outside it)."""

    server_id: uuid.UUID
    tenant_id: uuid.UUID
    name: str
    mail_stack: str
    ipv4: str | None
    mail_hostname: str | None
    dns_due: bool
    owner: str


def offset_seconds(server_id: uuid.UUID, interval: float) -> float:
    """The server's place in every interval: from the random bits of its id, so stable."""
    millis = max(1, int(interval * 1000))
    return (server_id.int & (2**62 - 1)) % millis / 1000


def next_slot(server_id: uuid.UUID, after: datetime, interval: float) -> datetime:
    """The first of the server's slots strictly after ``after``."""
    offset = offset_seconds(server_id, interval)
    count = math.floor((after.timestamp() - offset) / interval) + 1
    return datetime.fromtimestamp(offset + count * interval, UTC)


def on_due(wake: Callable[[], None]) -> Callable[[], None]:
    """Call ``wake`` after a transaction that made a server due commits; returns the
    function that stops it (the sweep of this process listens)."""
    _wakers.append(wake)
    return lambda: _wakers.remove(wake) if wake in _wakers else None


def _wake(_session: Any) -> None:
    for wake in list(_wakers):
        wake()


async def ensure_schedules(session: AsyncSession, now: datetime) -> int:
    """Give ready servers without a schedule one, due now: a server just provisioned is
    checked at once (then in its slot); how many got one."""
    missing = (
        await session.execute(
            select(Server.id, Server.tenant_id)
            .outerjoin(HealthSchedule, HealthSchedule.server_id == Server.id)
            .where(Server.state.in_(CHECKED_STATES), HealthSchedule.server_id.is_(None))
            .limit(1000)
        )
    ).all()
    if not missing:
        return 0
    rows = [
        {
            "server_id": server_id,
            "tenant_id": tenant_id,
            "next_run_at": now,
        }
        for server_id, tenant_id in missing
    ]
    statement = insert_for(session, HealthSchedule).values(rows)
    await session.execute(statement.on_conflict_do_nothing(index_elements=["server_id"]))
    return len(rows)


def _take(
    row: HealthSchedule, server: Server, owner: str, now: datetime, settings: Settings, *,
    dns_due: bool,
) -> Claim:  # fmt: skip
    """Lease ``row`` to ``owner`` (and move its DNS slot when DNS runs now): the one place a
    claim is made, whether the sweep found the server due or a run was asked for."""
    lease = timedelta(seconds=settings.health_lease_seconds)
    row.lease_owner, row.lease_expires_at, row.last_started_at = owner, now + lease, now
    if dns_due:
        row.next_dns_at = next_slot(server.id, now, settings.health_dns_interval_seconds)
    return Claim(
        server_id=server.id,
        tenant_id=server.tenant_id,
        name=server.name,
        mail_stack=server.mail_stack,
        ipv4=server.ipv4,
        mail_hostname=server.mail_hostname,
        dns_due=dns_due,
        owner=owner,
    )


async def _locked_row(
    session: AsyncSession, server: Server, next_run_at: datetime
) -> HealthSchedule:
    """The server's schedule row (made, due at ``next_run_at``, if missing), locked."""
    await ensure_row(session, server, next_run_at)
    row = await session.scalar(
        select(HealthSchedule).where(HealthSchedule.server_id == server.id).with_for_update()
    )
    assert row is not None
    return row


async def claim_due(
    session: AsyncSession, owner: str, limit: int, now: datetime, settings: Settings
) -> list[Claim]:
    """Take up to ``limit`` due servers (oldest due first) that nobody holds."""
    if limit <= 0:
        return []
    await ensure_schedules(session, now)
    found = (
        await session.execute(
            select(HealthSchedule, Server)
            .join(Server, Server.id == HealthSchedule.server_id)
            .where(
                Server.state.in_(CHECKED_STATES),
                HealthSchedule.next_run_at <= now,
                unleased(HealthSchedule, now),
            )
            .order_by(HealthSchedule.next_run_at)
            .limit(limit)
            .with_for_update(skip_locked=True, of=HealthSchedule)
        )
    ).all()
    claims = []
    for row, server in found:
        dns_due = row.next_dns_at is None or row.next_dns_at <= now
        row.next_run_at = next_slot(server.id, now, settings.health_interval_seconds)
        claims.append(_take(row, server, owner, now, settings, dns_due=dns_due))
    return claims


async def claim_one(
    session: AsyncSession,
    server: Server,
    owner: str,
    now: datetime,
    settings: Settings,
    *,
    dns: bool = True,
) -> Claim | None:
    """Take one server now, due or not (a run asked for); None while another run holds it."""
    row = await _locked_row(
        session, server, next_slot(server.id, now, settings.health_interval_seconds)
    )
    if row.lease_expires_at is not None and row.lease_expires_at >= now:
        return None
    return _take(row, server, owner, now, settings, dns_due=dns)


async def ensure_row(session: AsyncSession, server: Server, next_run_at: datetime) -> None:
    """The server's schedule row, made (due at ``next_run_at``) if it has none."""
    statement = insert_for(session, HealthSchedule).values(
        server_id=server.id, tenant_id=server.tenant_id, next_run_at=next_run_at
    )
    await session.execute(statement.on_conflict_do_nothing(index_elements=["server_id"]))


async def release(session: AsyncSession, claim: Claim, now: datetime) -> None:
    """The run's results are stored: the server may be claimed again when due."""
    await session.execute(
        update(HealthSchedule)
        .where(
            HealthSchedule.server_id == claim.server_id, HealthSchedule.lease_owner == claim.owner
        )
        .values(lease_owner=None, lease_expires_at=None, last_finished_at=now)
        .execution_options(synchronize_session=False)
    )


async def due_at(session: AsyncSession, server: Server, at: datetime, **values: Any) -> None:
    """Make the server due by ``at`` (never later than it already is); ``values`` are set on
    its schedule too. This process's sweep is woken once the transaction commits."""
    row = await _locked_row(session, server, at)
    row.next_run_at = min(row.next_run_at, at)
    for name, value in values.items():
        setattr(row, name, value)
    event.listen(session.sync_session, "after_commit", _wake, once=True)


async def lag_seconds(session: AsyncSession, now: datetime) -> float:
    """How far behind schedule the oldest due, unclaimed ready server is (0: none waits)."""
    oldest = await session.scalar(
        select(func.min(HealthSchedule.next_run_at))
        .join(Server, Server.id == HealthSchedule.server_id)
        .where(
            Server.state.in_(CHECKED_STATES),
            HealthSchedule.next_run_at <= now,
            unleased(HealthSchedule, now),
        )
    )
    return max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0


async def check_counts(session: AsyncSession) -> list[tuple[str, str, int]]:
    """Confirmed checks by (state, severity), fleet-wide, for /metrics."""
    rows = await session.execute(
        select(HealthCheck.state, HealthCheck.severity, func.count()).group_by(
            HealthCheck.state, HealthCheck.severity
        )
    )
    return [(state, severity, count) for state, severity, count in rows.all()]
