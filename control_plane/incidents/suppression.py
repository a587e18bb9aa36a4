"""Why an incident's notification is held back right now, if it is: a silence, a maintenance
window of its server, or inhibition (its server is unreachable altogether, so its resource
and MailU checks are consequences, not news)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.incidents.models import OPEN_STATES, Incident, MaintenanceWindow, Silence

# While all of these are failing on a server ...
INHIBITING_CHECKS = frozenset({"agent.link", "smtp.25"})
# ... notifications of these checks of the same server are held back.
INHIBITED_PREFIXES = ("disk.", "inodes.", "mailu.")
INHIBITED_CHECKS = frozenset({"memory", "cpu"})


def check_matches(pattern: str | None, check: str) -> bool:
    """A silence's check matcher: exact, or a prefix when it ends in ``*``."""
    if pattern is None:
        return True
    if pattern.endswith("*"):
        return check.startswith(pattern[:-1])
    return check == pattern


def is_inhibitable(check: str) -> bool:
    """Checks that only echo an unreachable server (its resources, MailU's status)."""
    return check in INHIBITED_CHECKS or check.startswith(INHIBITED_PREFIXES)


async def matching_silence(
    session: AsyncSession, incident: Incident, now: datetime
) -> Silence | None:
    """The oldest silence holding now whose matchers all fit the incident (the check
    pattern is matched here: SQL cannot express its prefix form portably)."""
    candidates = (
        await session.scalars(
            select(Silence)
            .where(
                Silence.tenant_id == incident.tenant_id,
                Silence.starts_at <= now,
                Silence.ends_at > now,
                or_(Silence.server_id.is_(None), Silence.server_id == incident.server_id),
                or_(Silence.severity.is_(None), Silence.severity == incident.severity),
            )
            .order_by(Silence.id)
        )
    ).all()
    return next((s for s in candidates if check_matches(s.check, incident.check)), None)


async def active_window(
    session: AsyncSession, incident: Incident, now: datetime
) -> MaintenanceWindow | None:
    if incident.server_id is None:
        return None
    found: MaintenanceWindow | None = await session.scalar(
        select(MaintenanceWindow)
        .where(
            MaintenanceWindow.tenant_id == incident.tenant_id,
            MaintenanceWindow.server_id == incident.server_id,
            MaintenanceWindow.starts_at <= now,
            MaintenanceWindow.ends_at > now,
        )
        .order_by(MaintenanceWindow.id)
        .limit(1)
    )
    return found


async def inhibited(session: AsyncSession, incident: Incident) -> bool:
    """An inhibitable check of a server whose agent link and port 25 both fail: that one
    outage is already told, its consequences would only add noise."""
    if incident.server_id is None or not is_inhibitable(incident.check):
        return False
    failing = set(
        (
            await session.scalars(
                select(Incident.check).where(
                    Incident.tenant_id == incident.tenant_id,
                    Incident.server_id == incident.server_id,
                    Incident.state.in_(OPEN_STATES),
                    Incident.check.in_(INHIBITING_CHECKS),
                )
            )
        ).all()
    )
    return failing >= INHIBITING_CHECKS


async def hold(session: AsyncSession, incident: Incident, now: datetime) -> str | None:
    """What holds this incident's notifications back now (said in the timeline), or None."""
    window = await active_window(session, incident, now)
    if window is not None:
        reason = f": {window.reason}" if window.reason else ""
        return f"maintenance window {window.id} until {window.ends_at.isoformat()}{reason}"
    silence = await matching_silence(session, incident, now)
    if silence is not None:
        return (
            f"silence {silence.id} by {silence.created_by} until "
            f"{silence.ends_at.isoformat()}: {silence.comment}"
        )
    if await inhibited(session, incident):
        return "inhibited: the server's agent link and SMTP port 25 are both failing"
    return None
