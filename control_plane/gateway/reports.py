"""Agents' command reports (progress and results), written in shared transactions.

Each report used to take a transaction of its own: a pool checkout, its statements and a
COMMIT, per message, from every stream at once. Reports arriving while one write is under
way now wait for it and go together in the next (group commit): at a trickle each is
written at once as before, under load one transaction carries many. A command's newer
progress replaces its older one still waiting. Each report learns its own outcome (a
result for a command this server does not have is not acknowledged); if the shared
transaction fails, each report is retried alone, so one bad report fails only its stream.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.commands import service as commands
from control_plane.db.engine import Database
from control_plane.gateway.translate import FINAL_STATES
from mailfleet.agent.v1 import agent_pb2

log = logging.getLogger(__name__)


@dataclass
class Report:
    server_id: uuid.UUID
    command_id: uuid.UUID
    update: agent_pb2.CommandUpdate
    done: asyncio.Future[bool] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    @property
    def final(self) -> str | None:
        return FINAL_STATES.get(self.update.state)


async def store(session: AsyncSession, report: Report) -> bool:
    """Progress, or the final report; True if a final report for a known command."""
    update_, final = report.update, report.final
    if final is None:
        await commands.record_progress(
            session, report.server_id, report.command_id,
            update_.progress_percent, update_.progress_message,
        )  # fmt: skip
        return False
    result = update_.result_json.decode() if update_.result_json else None
    if result is not None:
        json.loads(result)  # refuse to store something that is not JSON
    return await commands.record_result(
        session, report.server_id, report.command_id, final, result, update_.error or None
    )


class ReportWriter:
    def __init__(self, db: Database, on_batch: Callable[[int], None] | None = None) -> None:
        self.db = db
        self._waiting: list[Report] = []
        self._progress: dict[uuid.UUID, Report] = {}  # command -> its waiting progress
        self._writing: asyncio.Task[None] | None = None
        self._on_batch = on_batch or (lambda size: None)

    async def submit(self, report: Report) -> bool:
        """Write ``report`` with whatever else is waiting; what ``store`` says of it."""
        if report.final is None:
            older = self._progress.pop(report.command_id, None)
            if older is not None:  # superseded before it was written
                self._waiting.remove(older)
                older.done.set_result(False)
            self._progress[report.command_id] = report
        self._waiting.append(report)
        if self._writing is None or self._writing.done():
            self._writing = asyncio.create_task(self._drain())
        # the write goes on if this stream closes meanwhile: the others wait on it too
        return await asyncio.shield(report.done)

    async def _drain(self) -> None:
        while self._waiting:
            batch, self._waiting, self._progress = self._waiting, [], {}
            self._on_batch(len(batch))
            await self._write(batch)

    async def _write(self, batch: list[Report]) -> None:
        try:
            outcomes = await self.db.transact(_storing(batch))
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0], exc)
                return
            log.warning(
                "writing %d command reports together failed (%r); each alone", len(batch), exc
            )
            for report in batch:
                try:
                    [known] = await self.db.transact(_storing([report]))
                except Exception as alone:
                    _settle(report, alone)
                else:
                    _settle(report, known)
            return
        for report, known in zip(batch, outcomes, strict=True):
            _settle(report, known)


def _storing(batch: list[Report]) -> Callable[[AsyncSession], Awaitable[list[bool]]]:
    async def work(session: AsyncSession) -> list[bool]:
        return [await store(session, report) for report in batch]

    return work


def _settle(report: Report, outcome: bool | BaseException) -> None:
    if report.done.done():
        return
    if isinstance(outcome, BaseException):
        report.done.set_exception(outcome)
    else:
        report.done.set_result(outcome)
