"""Outbound SMTP from the VPS: the ``smtp.outbound`` check.

The sweep asks the server's agent (``smtp.probe_out``) to open an SMTP session to the
observer (``health/observer.py``); the result arrives later, as the command settles, and is
judged here and recorded through ``health.service.record_results``.

Verdicts: a refused connection is failing/critical (the provider or a firewall refuses
outbound port 25); a timeout or no route is unknown (a silent drop looks like a slow network:
not a verdict); an answer that is not the observer's is failing/warning; an observer that
saw another address than the server's sending address (the IP inventory's; before the
server has rows, ``servers.ipv4``) is failing/warning naming both; that address is ok. A
probe that was not delivered, timed out or failed on the agent is unknown.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.commands import handlers
from control_plane.commands import service as commands
from control_plane.commands.models import LIVE_STATES, Command
from control_plane.db.base import utcnow
from control_plane.health.results import Result
from control_plane.ips import service as ips
from control_plane.servers.models import Server
from control_plane.settings import Settings, parse_host_port
from mailfleet.smtp_observer import canonical_address

KIND = "smtp.probe_out"
CHECK = "smtp.outbound"
RUN_GRACE_SECONDS = 5.0  # the agent's run-time limit beyond the probe's own deadline


async def queue_outbound_probe(session: AsyncSession, server: Server, settings: Settings) -> bool:
    """Ask the server's agent to probe the observer (in the caller's transaction).

    False when there is no observer or no enrolled agent; True when a probe is queued or one
    is still on its way (its result will be recorded then). One not delivered within
    ``health_outbound_expire_seconds`` times out, which records unknown.
    """
    target = settings.smtp_observer_advertised
    if target is None or server.agent_state != "enrolled" or server.revoked_at is not None:
        return False
    pending = await session.scalar(
        select(Command.id)
        .where(
            Command.server_id == server.id,
            Command.kind == KIND,
            Command.state.in_(["queued", *LIVE_STATES]),
        )
        .limit(1)
    )
    if pending is not None:
        return True
    timeout = settings.health_outbound_timeout_seconds
    command = await commands.queue_system_command(
        session, server, KIND, probe_payload(server, target, timeout), timeout + RUN_GRACE_SECONDS
    )
    command.expires_at = utcnow() + timedelta(seconds=settings.health_outbound_expire_seconds)
    server_id = server.id
    event.listen(
        session.sync_session, "after_commit", lambda _s: handlers.wake(server_id), once=True
    )
    return True


def probe_payload(server: Server, observer: str, timeout: float) -> dict[str, Any]:
    """What ``smtp.probe_out`` is told: the observer (host:port) and the name to greet with.
    (The IP switch's egress check sends the same probe, marked with a ``purpose``.)"""
    host, port = parse_host_port(observer)
    return {
        "host": host,
        "port": port,
        "timeout_seconds": timeout,
        "helo": server.mail_hostname or server.hostname or "mailfleet-agent",
    }


def _unknown(detail: str) -> Result:
    return Result(CHECK, "unknown", "warning", detail)


def judge(
    state: str,
    result_json: str | None,
    error: str | None,
    sending_address: str | None,
    observer: str,
) -> Result:
    """The ``smtp.outbound`` result of a settled probe (``observer`` is host:port)."""
    if state != "succeeded":
        reason = f"{state}: {error}" if error else state
        return _unknown(f"could not check: the outbound probe did not run ({reason})")
    try:
        found: dict[str, Any] = json.loads(result_json or "")
        if not isinstance(found, dict):
            raise ValueError
    except ValueError:
        return _unknown("could not check: the agent's probe result is not readable")
    port = observer.rpartition(":")[2]
    kind = found.get("error_kind")
    if kind is not None:
        return _not_reached(str(kind), found.get("error") or "", bool(found.get("connected")),
                            observer, port)  # fmt: skip
    return _compare_source(found, sending_address, observer, port)


def _not_reached(kind: str, why: str, connected: bool, observer: str, port: str) -> Result:
    """The probe did not get a MailFleet observer's answer: refused is a verdict (the port
    is blocked), a timeout or an unreachable network is not."""
    if kind == "refused":
        return Result(
            CHECK,
            "failing",
            "critical",
            f"the provider or a firewall refuses outbound port {port}: connecting to the "
            f"observer at {observer} was refused",
            observed="refused",
            threshold="connects",
        )
    if kind == "timeout" and not connected:
        return _unknown(
            f"no answer from the observer at {observer} in time: outbound port {port} may "
            "be blocked (a silent drop looks like this), but a timeout is not a verdict"
        )
    if kind in ("timeout", "unreachable"):
        return _unknown(f"could not check: reaching the observer at {observer}: {why}")
    return Result(
        CHECK,
        "failing",
        "warning",
        f"something other than the MailFleet observer answered at {observer}: {why}",
        observed=kind,
    )


def _compare_source(
    found: dict[str, Any], sending_address: str | None, observer: str, port: str
) -> Result:
    """The observer answered: the port is open; the address it saw should be the server's
    sending address (another one means mail leaves through NAT or another interface)."""
    seen = canonical_address(str(found.get("observed_source") or ""))
    if seen is None:
        return Result(
            CHECK,
            "failing",
            "warning",
            f"{observer} answered, but not as the MailFleet observer (its EHLO reply names "
            "no source address)",
        )
    expected = canonical_address(sending_address or "")
    if expected is None:
        return Result(
            CHECK,
            "ok",
            "info",
            f"outbound port {port} is open; the observer saw {seen} (the server has no "
            "sending address on record to compare)",
            observed=seen,
        )
    if seen != expected:
        return Result(
            CHECK,
            "failing",
            "warning",
            f"mail leaves from {seen}, not from the server's sending address {expected}",
            observed=seen,
            threshold=expected,
        )
    return Result(
        CHECK,
        "ok",
        "info",
        f"outbound port {port} is open; the observer saw the sending address {seen}",
        observed=seen,
        threshold=expected,
    )


def _observer_of(command: Command) -> str:
    try:
        payload = json.loads(command.payload)
        return f"{payload['host']}:{payload['port']}"
    except (ValueError, KeyError, TypeError):
        return "the observer"


async def probe_settled(session: AsyncSession, command: Command) -> None:
    """``smtp.probe_out`` settled (result, failure, or timeout): record ``smtp.outbound``."""
    from control_plane.health import service  # health.service imports the sweep's world

    if '"purpose":' in command.payload:
        return  # another feature's probe (an IP switch's egress check), judged by it
    server = await session.get(Server, command.server_id)
    if server is None:
        return
    sending = await ips.sending_ip(session, server.id)  # the inventory's; before it: ipv4
    expected = sending.address if sending is not None else server.ipv4
    result = judge(command.state, command.result, command.error, expected, _observer_of(command))
    await service.record_results(session, server.id, [result], command.finished_at or utcnow())


handlers.register_result_handler(KIND, probe_settled)
