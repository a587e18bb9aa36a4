"""Where features and the agent link meet, so neither imports the other.

Features register what should happen when a command of theirs settles (per command kind),
when the link reports an agent event (per event kind), when an agent sends a report of its
own (per report kind: figures it pushes on its stream rather than being asked), and who
owns a mail domain (for ``dkim/<domain>/`` secrets in payloads); the gateway and the command
queue look them up here. Features ask for delivery with ``wake``, the one function the
gateway's hub listens to — the place that gains a PostgreSQL NOTIFY when several replicas
share the queue.

Registration happens when the feature's module is imported; ``mailfleet serve`` imports
them all (see tests/control_plane/test_boundaries.py).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.commands.models import Command

log = logging.getLogger(__name__)

AGENT_CONNECTED = "agent.connected"  # its stream came up (hello received and recorded)
AGENT_DISCONNECTED = "agent.disconnected"  # its last stream on this replica ended

ResultHandler = Callable[[AsyncSession, Command], Awaitable[None]]
EventHandler = Callable[[AsyncSession, uuid.UUID], Awaitable[None]]
ReportHandler = Callable[[AsyncSession, uuid.UUID, dict[str, Any]], Awaitable[None]]
DomainOwner = Callable[[AsyncSession, str, uuid.UUID], Awaitable[bool]]
Waker = Callable[[uuid.UUID | None], None]

_result_handlers: dict[str, list[ResultHandler]] = {}
_event_handlers: dict[str, list[EventHandler]] = {}
_report_handlers: dict[str, list[ReportHandler]] = {}
_domain_owners: list[DomainOwner] = []
_wakers: list[Waker] = []


class Streams(Protocol):
    """This replica's agent streams, as a feature may use them (the gateway's hub is one)."""

    def close(self, server_id: uuid.UUID, reason: str) -> bool: ...


def _add(registry: dict[str, list[Callable[..., Awaitable[None]]]], key: str, fn: object) -> None:
    handlers = registry.setdefault(key, [])
    if fn not in handlers:  # a module imported twice registers once
        handlers.append(fn)  # type: ignore[arg-type]


def register_result_handler(kind: str, handler: ResultHandler) -> None:
    """``handler`` runs once when a ``kind`` command settles, in the transaction that
    settles it (agent report, undeliverable, or timed out)."""
    _add(_result_handlers, kind, handler)


def register_event_handler(event: str, handler: EventHandler) -> None:
    """``handler`` runs in the gateway's transaction that records ``event`` for a server."""
    _add(_event_handlers, event, handler)


def register_report_handler(kind: str, handler: ReportHandler) -> None:
    """``handler`` stores a ``kind`` report an agent sent (its fields as a dict), in the
    gateway's transaction for it."""
    _add(_report_handlers, kind, handler)


def register_domain_owner(lookup: DomainOwner) -> None:
    if lookup not in _domain_owners:
        _domain_owners.append(lookup)


def handles_results(kind: str) -> bool:
    return bool(_result_handlers.get(kind))


def handles_event(event: str) -> bool:
    return bool(_event_handlers.get(event))


def handles_reports(kind: str) -> bool:
    return bool(_report_handlers.get(kind))


def domain_owners() -> tuple[DomainOwner, ...]:
    return tuple(_domain_owners)


async def command_settled(session: AsyncSession, command: Command) -> None:
    """Run the handlers of ``command.kind``; one that fails is logged and undone alone
    (a savepoint), so the result itself is still stored."""
    for handler in _result_handlers.get(command.kind, ()):
        try:
            async with session.begin_nested():
                await handler(session, command)
        except Exception:
            log.exception("the %s result handler %r failed", command.kind, handler)


async def agent_event(session: AsyncSession, event: str, server_id: uuid.UUID) -> None:
    for handler in _event_handlers.get(event, ()):
        await handler(session, server_id)


async def agent_report(
    session: AsyncSession, kind: str, server_id: uuid.UUID, report: dict[str, Any]
) -> None:
    for handler in _report_handlers.get(kind, ()):
        await handler(session, server_id, report)


async def domain_owned_by(session: AsyncSession, name: str, tenant_id: uuid.UUID) -> bool:
    """True if a registered owner lookup says ``tenant_id`` owns domain ``name``."""
    for lookup in _domain_owners:
        if await lookup(session, name, tenant_id):
            return True
    return False


def wake(server_id: uuid.UUID | None = None) -> None:
    """Commands (or cancels) wait for ``server_id`` (None: look at every server): deliver now
    rather than at the dispatcher's next tick. Call it after the commit that queued them."""
    for waker in list(_wakers):
        waker(server_id)


def on_wake(waker: Waker) -> Callable[[], None]:
    """Listen to ``wake``; returns the function that stops listening."""
    _wakers.append(waker)
    return lambda: _wakers.remove(waker) if waker in _wakers else None
