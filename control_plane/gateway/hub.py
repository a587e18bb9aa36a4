"""Live agent sessions held by this replica, so other parts can reach or close them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

from mailfleet.agent.v1 import agent_pb2

log = logging.getLogger(__name__)


@dataclass(eq=False)
class AgentSession:
    """One connected agent: an outbox the stream writer drains, and a reason to close.

    ``None`` in the outbox tells the writer to end the stream, so it waits on the queue alone
    (no task per outgoing message).
    """

    server_id: uuid.UUID
    tenant_id: uuid.UUID
    certificate_serial: str
    outbox: asyncio.Queue[agent_pb2.ControlMessage | None] = field(default_factory=asyncio.Queue)
    metric_batches: asyncio.Queue[agent_pb2.MetricBatch] = field(default_factory=asyncio.Queue)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    close_reason: str = ""

    def close(self, reason: str) -> None:
        if not self.closed.is_set():
            self.close_reason = reason
            self.closed.set()
            self.end()

    def end(self) -> None:
        """Wake the writer to end the stream (closed, or the agent's side finished)."""
        self.outbox.put_nowait(None)

    def send(self, message: agent_pb2.ControlMessage) -> None:
        self.outbox.put_nowait(message)


class AgentHub:
    def __init__(self) -> None:
        self._sessions: dict[uuid.UUID, AgentSession] = {}
        self.dispatch_wanted = asyncio.Event()
        self._wanted: set[uuid.UUID] = set()
        self._wanted_all = False
        self._command_waiters: dict[uuid.UUID, list[asyncio.Event]] = {}

    def command_settled(self, command_id: uuid.UUID) -> None:
        """A command reached a final state here: wake whoever waits on it in this process."""
        for waiter in self._command_waiters.pop(command_id, ()):
            waiter.set()

    @contextlib.contextmanager
    def watching(self, command_id: uuid.UUID) -> Iterator[asyncio.Event]:
        """An event set when the command settles; register it *before* reading its state,
        so a result stored in between is never missed."""
        waiter = asyncio.Event()
        self._command_waiters.setdefault(command_id, []).append(waiter)
        try:
            yield waiter
        finally:
            waiters = self._command_waiters.get(command_id, [])
            if waiter in waiters:
                waiters.remove(waiter)
                if not waiters:
                    del self._command_waiters[command_id]

    def wake_dispatcher(self, server_id: uuid.UUID | None = None) -> None:
        """Work for ``server_id``'s agent (None: any agent's) arrived: deliver now, not at
        the next tick. A server whose stream another replica holds is not ours to wake."""
        if server_id is None:
            self._wanted_all = True
        elif server_id in self._sessions:
            self._wanted.add(server_id)
        else:
            return
        self.dispatch_wanted.set()

    def take_wanted(self) -> list[uuid.UUID]:
        """The held servers woken since the last call (all held ones after a wake for any)."""
        wanted = (
            self.connected()
            if self._wanted_all
            else [s for s in self._wanted if s in self._sessions]
        )
        self._wanted.clear()
        self._wanted_all = False
        self.dispatch_wanted.clear()
        return wanted

    def register(self, session: AgentSession) -> None:
        """A new stream replaces an older one of the same agent (it reconnected)."""
        previous = self._sessions.get(session.server_id)
        if previous is not None:
            previous.close("replaced by a newer connection")
        self._sessions[session.server_id] = session

    def unregister(self, session: AgentSession) -> None:
        if self._sessions.get(session.server_id) is session:
            del self._sessions[session.server_id]

    def get(self, server_id: uuid.UUID) -> AgentSession | None:
        return self._sessions.get(server_id)

    def connected(self) -> list[uuid.UUID]:
        return list(self._sessions)

    def close(self, server_id: uuid.UUID, reason: str) -> bool:
        session = self._sessions.get(server_id)
        if session is None:
            return False
        log.info("closing the stream of server %s: %s", server_id, reason)
        session.close(reason)
        return True

    def __len__(self) -> int:
        return len(self._sessions)
