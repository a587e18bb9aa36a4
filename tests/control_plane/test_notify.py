"""Wake-ups between replicas over LISTEN/NOTIFY, on PostgreSQL: a notification arrives on
commit and never on rollback, a lost listening connection comes back and wakes everything,
a replica wakes itself on commit and drops the echo of its own notifications, and with two
replicas (two engines, hubs and session services on one database, no gRPC around them) a
command queued on one reaches the agent held by the other at once — not at the
safety-net poll, which is set far out — and the other's long poll wakes on its result."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import text

from control_plane.commands.schemas import CommandCreate
from control_plane.commands.service import create_command
from control_plane.db.base import utcnow
from control_plane.db.engine import Database
from control_plane.db.notify import COMMANDS_QUEUED, Listener, notify, wake_here
from control_plane.gateway.hub import AgentHub
from control_plane.gateway.identity import PeerIdentity
from control_plane.gateway.server import replica_listener
from control_plane.gateway.sessions import SessionService
from control_plane.gateway.telemetry import GatewayTelemetry
from control_plane.metrics.ingest import MetricIngest
from control_plane.servers.models import Server
from control_plane.settings import Settings
from control_plane.vault.client import Vault
from mailfleet.agent.v1 import agent_pb2
from tests.support.rows import a_server_row, a_tenant

pytestmark = pytest.mark.postgres_only
SAFETY_NET_SECONDS = 60.0  # the poll: far beyond every wait below


@contextlib.asynccontextmanager
async def another_replica(db: Database) -> AsyncIterator[Database]:
    """A second engine on the same database: another replica's pool, other backends."""
    other = Database(db.url.render_as_string(hide_password=False))
    try:
        yield other
    finally:
        await other.dispose()


@contextlib.asynccontextmanager
async def running(listener: Listener) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(listener.run())
    try:
        async with asyncio.timeout(10):
            await listener.listening.wait()
        yield task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_notifications_arrive_on_commit_only_and_survive_a_lost_connection(
    db: Database,
) -> None:
    heard: asyncio.Queue[str | None] = asyncio.Queue()
    listener = Listener(db, {COMMANDS_QUEUED: heard.put_nowait}, retry_seconds=0.1)
    async with running(listener), another_replica(db) as sender:
        assert await asyncio.wait_for(heard.get(), 5) is None  # connected: wake everything
        with contextlib.suppress(RuntimeError):
            async with sender.session() as session:
                await notify(session, COMMANDS_QUEUED, "rolled back")
                raise RuntimeError("roll back")
        async with sender.session() as session:
            await notify(session, COMMANDS_QUEUED, "committed")
        assert await asyncio.wait_for(heard.get(), 5) == "committed"
        assert heard.empty()

        async with db.session() as session:  # the server drops the listening connection
            ended = await session.scalar(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE query LIKE 'LISTEN%' AND datname = current_database()"
                )
            )
        assert ended == 1
        assert await asyncio.wait_for(heard.get(), 5) is None  # back, and everything woken
        async with sender.session() as session:
            await notify(session, COMMANDS_QUEUED, "after")
        assert await asyncio.wait_for(heard.get(), 5) == "after"


async def test_a_replica_wakes_itself_on_commit_and_drops_its_own_echo(db: Database) -> None:
    heard: asyncio.Queue[str | None] = asyncio.Queue()
    here: list[str | None] = []
    listener = Listener(db, {COMMANDS_QUEUED: heard.put_nowait}, retry_seconds=0.1)
    remove = wake_here({COMMANDS_QUEUED: here.append})
    try:
        async with running(listener), another_replica(db) as sender:
            assert await asyncio.wait_for(heard.get(), 5) is None
            with contextlib.suppress(RuntimeError):
                async with db.session() as session:
                    await notify(session, COMMANDS_QUEUED, "rolled back")
                    raise RuntimeError("roll back")
            async with db.session() as session:
                await notify(session, COMMANDS_QUEUED, "mine")
                assert here == []  # not before the commit
            assert here == ["mine"]  # woken in-process at the commit, the rollback never
            async with sender.session() as session:  # then one from another replica
                await notify(session, COMMANDS_QUEUED, "theirs")
            # Notifications arrive in commit order: had the echo of "mine" been relayed,
            # it would come first.
            assert await asyncio.wait_for(heard.get(), 5) == "theirs"
            assert heard.empty()
            assert here == ["mine", "theirs"]  # the other engine's notify, in this process
    finally:
        remove()


class Replica:
    """One replica's agent side: a hub, its session service and its listener."""

    def __init__(self, db: Database, settings: Settings, vault: Vault) -> None:
        self.hub = AgentHub()
        self.telemetry = GatewayTelemetry()
        self.sessions = SessionService(
            db, self.hub, settings, MetricIngest(db), self.telemetry, vault
        )
        self.listener = replica_listener(db, self.hub, settings, self.telemetry)

    def figure(self, name: str, **labels: str) -> float:
        return self.telemetry.registry.get_sample_value(name, labels) or 0.0


async def test_a_command_queued_on_one_replica_reaches_the_agent_on_the_other_at_once(
    db: Database, settings: Settings, vault: Vault
) -> None:
    server = await a_server_row(db, await a_tenant(db), name=f"s-{uuid.uuid4().hex[:8]}")
    async with another_replica(db) as other_db:
        await _queued_on_one_reaches_the_other(db, other_db, server.id, settings, vault)


async def _queued_on_one_reaches_the_other(
    db: Database, other_db: Database, server_id: uuid.UUID, settings: Settings, vault: Vault
) -> None:
    holder, other = Replica(db, settings, vault), Replica(other_db, settings, vault)
    replies: asyncio.Queue[agent_pb2.AgentMessage] = asyncio.Queue()

    async def agent_says() -> AsyncIterator[agent_pb2.AgentMessage]:
        while True:
            yield await replies.get()

    peer = PeerIdentity(server_id, "serial", utcnow() + timedelta(hours=1))
    stream = holder.sessions.stream(peer, agent_pb2.Hello(agent_version="t"), agent_says())
    received: asyncio.Queue[agent_pb2.ControlMessage] = asyncio.Queue()

    async def agent_hears() -> None:
        async for message in stream:
            received.put_nowait(message)

    tasks = [
        asyncio.create_task(agent_hears()),
        asyncio.create_task(holder.sessions.maintain(SAFETY_NET_SECONDS)),
    ]
    try:
        async with running(holder.listener), running(other.listener):
            assert (await asyncio.wait_for(received.get(), 5)).HasField("hello")
            await asyncio.sleep(0.2)  # the maintain loop's first (full) pass is behind it
            async with other_db.session() as session:  # queued through the other replica
                row = await session.get(Server, server_id)
                assert row is not None
                command, _ = await create_command(session, row, CommandCreate(kind="ping"))
            delivered = await asyncio.wait_for(received.get(), 5)
            assert (delivered.command.id, delivered.command.attempt) == (str(command.id), 1)
            assert holder.figure("mailfleet_command_dispatch_seconds_count") == 1
            assert holder.figure("mailfleet_notify_wakeups_total", channel=COMMANDS_QUEUED) >= 1

            with other.hub.watching(command.id) as settled:  # the other's long poll
                replies.put_nowait(
                    agent_pb2.AgentMessage(
                        command_update=agent_pb2.CommandUpdate(
                            id=str(command.id), state=agent_pb2.COMMAND_STATE_SUCCEEDED
                        )
                    )
                )
                await asyncio.wait_for(settled.wait(), 5)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
