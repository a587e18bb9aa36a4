"""Wake-ups across replicas over PostgreSQL's LISTEN/NOTIFY.

A write that other replicas must act on at once (a command queued for an agent another
replica holds, a command settled that another replica's API call waits for) sends a
notification inside its own transaction: PostgreSQL delivers it on commit and drops it on
rollback, so a listener never wakes for work that is not there. Each replica keeps one
connection listening. Notifications are a shortcut, not the record: while that connection
is down they are lost, so every (re)connection wakes everything once, and the callers keep
their slower polls as the safety net.

The replica that sends a notification wakes its own side in-process right after the
commit (``wake_here``), on SQLite as on PostgreSQL, and its listener drops the echo of its
own notifications (sent from a backend of its own pool): the echo arrives after the local
wake was served and only cost a query that found nothing — about four per command.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.engine import Database

log = logging.getLogger(__name__)

COMMANDS_QUEUED = "mailfleet_commands_queued"  # payload: the server's id
COMMAND_SETTLED = "mailfleet_command_settled"  # payload: the command's id

# Called with a notification's payload, or with None after (re)connecting: "anything may
# have happened meanwhile".
Wake = Callable[[str | None], None]


def listens(db: Database) -> bool:
    return db.url.get_backend_name() == "postgresql"


# This process's own wake-ups per channel (the gateway registers its hub's).
_here: dict[str, list[Wake]] = {}


def wake_here(channels: Mapping[str, Wake]) -> Callable[[], None]:
    """Have this process's ``notify`` calls wake ``channels`` after their commit; returns
    the function that takes them back."""
    for channel, wake in channels.items():
        _here.setdefault(channel, []).append(wake)

    def remove() -> None:
        for channel, wake in channels.items():
            with contextlib.suppress(ValueError):
                _here.get(channel, []).remove(wake)

    return remove


def _wake(wake: Wake, channel: str, payload: str | None) -> None:
    try:
        wake(payload)
    except Exception:
        log.exception("the %s wake-up failed", channel)


async def notify(session: AsyncSession, channel: str, payload: str) -> None:
    """Wake this replica and every other replica's listener, when (and only if) this
    transaction commits."""

    def committed(_session: object) -> None:
        for wake in tuple(_here.get(channel, ())):
            _wake(wake, channel, payload)

    event.listen(session.sync_session, "after_commit", committed, once=True)
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(select(func.pg_notify(channel, payload)))


class Listener:
    """One connection LISTENing on ``channels``, reconnecting until cancelled."""

    def __init__(
        self,
        db: Database,
        channels: Mapping[str, Wake],
        *,
        retry_seconds: float = 1.0,
        check_seconds: float = 15.0,
        on_notify: Callable[[str], None] | None = None,
    ) -> None:
        self._dsn = db.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self.channels = dict(channels)
        self.retry_seconds, self.check_seconds = retry_seconds, check_seconds
        self._on_notify = on_notify
        self._own_backends = db.backend_pids  # whose notifications were woken in-process
        self.listening = asyncio.Event()  # set while the connection listens

    async def run(self) -> None:
        while True:
            try:
                await self._listen()
                reason = "closed by the server"
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                reason = str(exc) or type(exc).__name__
            log.warning("LISTEN connection lost (%s); reconnecting", reason)
            await asyncio.sleep(self.retry_seconds)

    async def _listen(self) -> None:
        connection = await asyncpg.connect(self._dsn, timeout=10)
        lost = asyncio.Event()
        connection.add_termination_listener(lambda _connection: lost.set())
        try:
            for channel in self.channels:
                await connection.add_listener(channel, self._relay)
            self.listening.set()
            for wake in self.channels.values():
                wake(None)  # what was sent while no one listened
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.check_seconds):
                        await lost.wait()
                if not lost.is_set():  # a half-open connection only shows when used
                    await connection.fetchval("SELECT 1", timeout=5)
        finally:
            self.listening.clear()
            with contextlib.suppress(Exception):
                await connection.close(timeout=2)

    def _relay(self, _connection: Any, pid: int, channel: str, payload: str) -> None:
        if pid in self._own_backends:
            return  # sent by this replica, which woke itself on commit
        if self._on_notify is not None:
            self._on_notify(channel)
        wake = self.channels.get(channel)
        if wake is not None:
            _wake(wake, channel, payload)
