"""Features' result handlers run once, when a command settles; ``wake`` reaches listeners."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.commands import handlers
from control_plane.commands import service as commands
from control_plane.commands.models import Command
from control_plane.db.engine import Database
from control_plane.servers.models import Server
from tests.conftest import MakeTenant


async def test_result_handlers_run_once_and_a_failing_one_is_undone_alone(
    client: httpx.AsyncClient, make_tenant: MakeTenant, db: Database
) -> None:
    tenant = await make_tenant()
    created = await client.post(
        "/api/v1/servers", json={"name": "hd", "mail_stack": "none"}, headers=tenant.headers
    )
    server_id = uuid.UUID(created.json()["id"])
    seen: list[tuple[uuid.UUID, str, str | None]] = []

    async def failing(session: AsyncSession, command: Command) -> None:
        await session.execute(
            update(Server).where(Server.id == command.server_id).values(hostname="by-a-failure")
        )
        raise RuntimeError("a broken handler")

    async def recording(session: AsyncSession, command: Command) -> None:
        seen.append((command.id, command.state, command.result))
        await session.execute(
            update(Server).where(Server.id == command.server_id).values(agent_version="handled")
        )

    kind = f"test.{uuid.uuid4().hex[:12]}"
    handlers.register_result_handler(kind, failing)
    handlers.register_result_handler(kind, recording)
    handlers.register_result_handler(kind, recording)  # twice: still runs once
    async with db.session() as session:
        server = await session.get(Server, server_id)
        assert server is not None
        command = await commands.queue_system_command(session, server, kind, {}, 5)
    for _ in range(2):  # the agent re-sends its report after a reconnect
        async with db.session() as session:
            assert await commands.record_result(
                session, server_id, command.id, "succeeded", '{"ok": true}', None
            )

    assert seen == [(command.id, "succeeded", '{"ok": true}')]
    async with db.session() as session:
        stored = await session.get(Command, command.id)
        server = await session.get(Server, server_id)
    assert stored is not None and stored.state == "succeeded"
    assert server is not None
    assert (server.hostname, server.agent_version) == (None, "handled")


def test_wake_reaches_listeners_until_they_stop() -> None:
    heard: list[uuid.UUID | None] = []
    stop = handlers.on_wake(heard.append)
    server_id = uuid.uuid4()
    handlers.wake(server_id)
    handlers.wake()
    stop()
    handlers.wake(server_id)
    assert heard == [server_id, None]
