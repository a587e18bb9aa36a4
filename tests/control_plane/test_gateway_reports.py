"""Agents' command reports share transactions: many arriving at once are written together
(fewer than one transaction each), each still learns its own outcome, a newer progress of a
command replaces its older one still waiting, and one report that cannot be stored fails
alone."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from sqlalchemy import select

from control_plane.commands.models import Command
from control_plane.commands.schemas import CommandCreate
from control_plane.commands.service import claim_for_delivery, create_command
from control_plane.db.engine import Database
from control_plane.gateway.reports import Report, ReportWriter
from control_plane.servers.models import Server
from mailfleet.agent.v1 import agent_pb2
from tests.support.rows import a_server_row, a_tenant

SUCCEEDED, RUNNING = agent_pb2.COMMAND_STATE_SUCCEEDED, agent_pb2.COMMAND_STATE_RUNNING


async def sent_commands(db: Database, server: Server, count: int) -> list[uuid.UUID]:
    async with db.session() as session:
        for _ in range(count):
            await create_command(session, server, CommandCreate(kind="ping"))
    async with db.session() as session:
        return [d.command_id for d in await claim_for_delivery(session, [server.id])]


def done(command_id: uuid.UUID, result: bytes = b'{"pong": true}') -> agent_pb2.CommandUpdate:
    return agent_pb2.CommandUpdate(id=str(command_id), state=SUCCEEDED, result_json=result)


async def test_reports_arriving_together_share_transactions(db: Database) -> None:
    server = await a_server_row(db, await a_tenant(db), name=f"s-{uuid.uuid4().hex[:8]}")
    ids = await sent_commands(db, server, 30)
    batches: list[int] = []
    writer = ReportWriter(db, on_batch=batches.append)
    progress = agent_pb2.CommandUpdate(id=str(ids[0]), state=RUNNING, progress_percent=10)
    newer = agent_pb2.CommandUpdate(id=str(ids[0]), state=RUNNING, progress_percent=50)
    stranger = uuid.uuid4()  # no command of this server: not acknowledged
    reports = [Report(server.id, ids[0], progress), Report(server.id, ids[0], newer)]
    reports += [Report(server.id, i, done(i)) for i in ids[1:]]
    reports += [Report(server.id, stranger, done(stranger))]
    bad = Report(server.id, ids[0], done(ids[0], b"not json"))
    outcomes = await asyncio.gather(
        *(writer.submit(r) for r in [*reports, bad]), return_exceptions=True
    )
    assert outcomes[:2] == [False, False]  # progress is never "settled"
    assert outcomes[2:-2] == [True] * 29 and outcomes[-2] is False
    assert isinstance(outcomes[-1], json.JSONDecodeError)  # the bad one alone failed
    assert batches == [len(reports)]  # one transaction tried for all (less the superseded)
    async with db.session() as session:
        rows = {c.id: c for c in await session.scalars(select(Command).where(Command.id.in_(ids)))}
    assert all(rows[i].state == "succeeded" for i in ids[1:])
    first = rows[ids[0]]
    assert (first.state, first.progress_percent) == ("running", 50)  # the newer progress
    with pytest.raises(json.JSONDecodeError):
        await writer.submit(Report(server.id, ids[0], done(ids[0], b"{")))
