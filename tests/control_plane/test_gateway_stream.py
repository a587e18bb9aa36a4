"""One agent stream's lifetime in the gateway's session service, without gRPC around it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

from control_plane.db.base import utcnow
from control_plane.db.engine import Database
from control_plane.gateway.hub import AgentHub
from control_plane.gateway.identity import PeerIdentity
from control_plane.gateway.sessions import SessionService
from control_plane.gateway.telemetry import GatewayTelemetry
from control_plane.metrics.ingest import MetricIngest
from control_plane.settings import Settings
from control_plane.vault.client import Vault
from mailfleet.agent.v1 import agent_pb2
from tests.support.rows import a_server_row, a_tenant


async def test_a_stream_cancelled_while_it_waits_leaves_no_task_behind(
    db: Database, settings: Settings, vault: Vault
) -> None:
    """The RPC may end while the stream waits for something to send: everything it started
    (the outbox read too) is cancelled and awaited, none left pending to be destroyed."""
    server = await a_server_row(db, await a_tenant(db), name=f"s-{uuid.uuid4().hex[:8]}")
    hub = AgentHub()
    sessions = SessionService(db, hub, settings, MetricIngest(db), GatewayTelemetry(), vault)
    peer = PeerIdentity(server.id, "serial", utcnow() + timedelta(hours=1))
    silent = asyncio.Event()

    async def incoming() -> AsyncIterator[agent_pb2.AgentMessage]:
        await silent.wait()  # the agent says nothing more
        yield agent_pb2.AgentMessage()

    before = asyncio.all_tasks()
    stream = sessions.stream(peer, agent_pb2.Hello(agent_version="t"), incoming())

    async def consume() -> None:
        async for _ in stream:
            pass

    consumer = asyncio.create_task(consume())
    for _ in range(100):  # until the hello reply went out and it waits again
        await asyncio.sleep(0.02)
        if hub.get(server.id) is not None and hub.get(server.id).outbox.empty():  # type: ignore[union-attr]
            break
    await asyncio.sleep(0.1)
    consumer.cancel()
    await asyncio.gather(consumer, return_exceptions=True)
    await stream.aclose()  # type: ignore[attr-defined]  # an async generator
    left = [t for t in asyncio.all_tasks() - before if t is not asyncio.current_task()]
    assert [t for t in left if not t.done()] == [], left
    assert hub.get(server.id) is None
