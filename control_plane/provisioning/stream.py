"""A server's events as a server-sent-events stream (``GET …/events`` with
``Accept: text/event-stream``).

The stream sends the history after ``Last-Event-ID`` (or from the start), then new events as
they are recorded, and ends with an ``end`` event once the server is ``ready`` or ``failed``
(or ``deleted`` once it is gone). Each event's ``id`` is its UUIDv7, so a client that
reconnects with ``Last-Event-ID`` continues exactly where it left off. A comment line every
15 s keeps proxies from closing an idle stream; a stream lasts at most ``MAX_SECONDS``.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.provisioning.events import list_events
from control_plane.servers.models import Server
from control_plane.servers.schemas import ServerEventOut

POLL_SECONDS = 0.5
KEEPALIVE_SECONDS = 15.0
MAX_SECONDS = 3600.0
SETTLED = ("ready", "failed")


def sse(event: str, data: str, event_id: str | None = None) -> str:
    """One event; data of several lines (an HTML fragment) as one ``data:`` line each."""
    head = f"id: {event_id}\n" if event_id else ""
    lines = "".join(f"data: {line}\n" for line in data.split("\n"))
    return f"{head}event: {event}\n{lines}\n"


async def follow(
    session_factory: Callable[[], AbstractAsyncContextManager[AsyncSession]],
    server_id: uuid.UUID,
    after: uuid.UUID | None,
) -> AsyncIterator[str]:
    started = last_sent = time.monotonic()
    while time.monotonic() - started < MAX_SECONDS:
        async with session_factory() as session:
            page = await list_events(session, server_id, after, 500)
            server = await session.get(Server, server_id)
            state = server.state if server is not None else "deleted"
        for event in page.items:
            after = event.id
            out = ServerEventOut.model_validate(event, from_attributes=True)
            yield sse(event.kind, out.model_dump_json(), str(event.id))
            last_sent = time.monotonic()
        if page.next_after is not None:
            continue
        if state in SETTLED or state == "deleted":
            yield sse("end", json.dumps({"state": state}))
            return
        if time.monotonic() - last_sent > KEEPALIVE_SECONDS:
            yield ": keep-alive\n\n"
            last_sent = time.monotonic()
        await asyncio.sleep(POLL_SECONDS)
    yield sse("end", json.dumps({"state": "timeout"}))
