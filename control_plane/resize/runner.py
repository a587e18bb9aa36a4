"""Running due resize steps (``control_plane.workflows.runner`` under the resize's lease) and
recording their outcomes: the steps' states, the revert on failure, events and incidents.

One runner per ``mailfleet serve``; it looks for due resizes every
``MAILFLEET_RESIZE_TICK_SECONDS``, and at once when a request commits or the agent answers
the facts command ``verify`` waits for.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import event, update
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.commands import handlers
from control_plane.commands.models import Command
from control_plane.db.base import utcnow
from control_plane.db.engine import Database
from control_plane.incidents import service as incidents
from control_plane.incidents.signals import server_signal
from control_plane.provisioning import events
from control_plane.provisioning.workflow import Fail, Retry, Wait
from control_plane.resize.models import ServerResize, ServerResizeStep
from control_plane.resize.workflow import FACTS, FORWARD, Workflow, step_seconds
from control_plane.servers.models import Server
from control_plane.settings import Settings
from control_plane.workflows import agent
from control_plane.workflows.runner import Outcome, StepRunner, Wakers, later_seconds
from control_plane.workflows.steps import Done

CHECK = "server.resize"
wake_runners = Wakers()  # this process's resize runners: look for due resizes now


def current(resize: ServerResize, steps: Sequence[ServerResizeStep]) -> ServerResizeStep | None:
    """The step the resize is at: the next forward one, or ``revert`` while rolling back."""
    if resize.state == "rolling_back":
        return steps[-1]
    if resize.state != "running":
        return None
    return next((s for s in steps if s.name in FORWARD and s.state in ("pending", "running")), None)


class ResizeRunner(StepRunner[ServerResize, ServerResizeStep]):
    """One per control-plane process (``serve`` starts it); any number per database."""

    model, step_model, parent, what = ServerResize, ServerResizeStep, "resize_id", "resizes"
    wakers = wake_runners

    def __init__(self, settings: Settings, db: Database, workflow: Workflow) -> None:
        self.settings, self.workflow = settings, workflow
        super().__init__(db, settings.resize_lease_seconds, settings.resize_tick_seconds)

    def current(
        self, row: ServerResize, steps: Sequence[ServerResizeStep]
    ) -> ServerResizeStep | None:
        return current(row, steps)

    async def outcome(self, row: ServerResize, step: ServerResizeStep) -> Outcome:
        if row.state == "rolling_back":
            return await self.workflow.revert(row)
        return await self.workflow.forward(row, step)

    async def record(
        self,
        session: AsyncSession,
        row: ServerResize,
        steps: Sequence[ServerResizeStep],
        step: ServerResizeStep,
        outcome: Outcome,
    ) -> None:
        await Turn(session, self.settings, row, steps, utcnow()).record(step, outcome)


class Turn:
    """One outcome being recorded on a resize and its steps, at ``now``."""

    def __init__(
        self,
        session: AsyncSession,
        settings: Settings,
        resize: ServerResize,
        steps: Sequence[ServerResizeStep],
        now: datetime,
    ) -> None:
        self.session, self.settings, self.resize, self.steps, self.now = (
            session, settings, resize, steps, now
        )  # fmt: skip

    async def record(self, step: ServerResizeStep, outcome: Outcome) -> None:
        resize = self.resize
        if isinstance(outcome, Done | Wait | Retry):
            for name, value in outcome.changes.items():
                setattr(resize, name, value)
        if isinstance(outcome, Wait | Retry):
            deadline = resize.step_deadline_at
            if deadline is None or self.now < deadline:
                self._later(step, outcome)
                return
            limit = step_seconds(self.settings)
            outcome = Fail(f"{step.name} did not finish within {limit:.0f} s: {outcome.message}")
        if resize.state == "rolling_back":
            await self._reverted(step, outcome)
        elif isinstance(outcome, Done):
            await self._advance(step, outcome)
        else:
            assert isinstance(outcome, Fail)
            await self._failed(step, outcome.reason)

    def _later(self, step: ServerResizeStep, outcome: Wait | Retry) -> None:
        resize = self.resize
        step.detail = outcome.message
        if isinstance(outcome, Retry):
            resize.step_attempts += 1
            resize.step_command_id = None
        delay = later_seconds(outcome, resize.step_attempts, self.settings.resize_tick_seconds)
        resize.next_run_at = self.now + timedelta(seconds=delay)

    def _enter(self, step: ServerResizeStep) -> None:
        resize = self.resize
        step.state, step.started_at = "running", self.now
        resize.step_command_id, resize.step_attempts = None, 0
        resize.step_deadline_at = self.now + timedelta(seconds=step_seconds(self.settings))
        resize.next_run_at = self.now

    def _finish(self, state: str) -> None:
        resize = self.resize
        resize.state, resize.finished_at = state, self.now
        resize.next_run_at = resize.step_deadline_at = resize.step_command_id = None

    async def _advance(self, step: ServerResizeStep, outcome: Done) -> None:
        step.state = "skipped" if outcome.skipped else "done"
        step.finished_at, step.detail = self.now, outcome.message
        following = self.steps[step.position + 1]
        if following.name in FORWARD:
            self._enter(following)
            return
        following.state, following.detail = "skipped", "nothing to revert: the resize succeeded"
        resize = self.resize
        self._finish("succeeded")
        await self._signal("ok", "info", f"{resize.from_plan} → {resize.to_plan} done")

    async def _failed(self, step: ServerResizeStep, reason: str) -> None:
        resize = self.resize
        step.state, step.finished_at, step.detail = "failed", self.now, reason
        resize.error = f"{step.name}: {reason}"
        await agent.settle(self.session, resize.step_command_id)
        revert = self.steps[-1]
        for later in self.steps[step.position + 1 : -1]:
            later.state = "skipped"
        if step.name == "preconditions":  # nothing was ordered: nothing to revert
            revert.state, revert.detail = "skipped", "nothing was changed"
            self._finish("failed")
            await self._failure("warning", f"{resize.error}; the server keeps {resize.from_plan}")
            return
        resize.state = "rolling_back"
        self._enter(revert)

    async def _reverted(self, step: ServerResizeStep, outcome: Outcome) -> None:
        resize = self.resize
        step.finished_at = self.now
        if isinstance(outcome, Done):
            step.state, step.detail = "done", outcome.message
            self._finish("failed")
            await self._failure("warning", f"{resize.error}; reverted, the server keeps "
                                f"{resize.from_plan}")  # fmt: skip
            return
        assert isinstance(outcome, Fail)
        step.state, step.detail = "failed", outcome.reason
        resize.error = (
            f"{resize.error}; reverting failed: {outcome.reason}; the instance may be left "
            f"resized to {resize.to_plan} awaiting confirmation at {resize.provider}"
        )
        self._finish("failed")
        await self._failure("critical", resize.error)

    async def _failure(self, severity: Literal["critical", "warning"], summary: str) -> None:
        self.resize.error = summary
        await self._signal("failing", severity, f"resize {self.resize.id} failed: {summary}")

    async def _signal(
        self,
        state: Literal["ok", "failing"],
        severity: Literal["critical", "warning", "info"],
        summary: str,
    ) -> None:
        """An event on the server, and ``server.resize``: a failed resize opens an incident
        (critical when the revert failed too); the next one that succeeds resolves it."""
        resize = self.resize
        server = await self.session.get(Server, resize.server_id)
        if server is not None:
            events.record(self.session, server, "resize", f"resize {resize.id}: {summary}")
            signal = server_signal(server, CHECK, state, severity, summary)
            await incidents.observe(self.session, [signal], self.now)


async def command_settled(session: AsyncSession, command: Command) -> None:
    """The facts command ``verify`` waits for settled: that resize is due now."""
    result: Any = await session.execute(
        update(ServerResize)
        .where(ServerResize.step_command_id == command.id)
        .values(next_run_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if result.rowcount:
        event.listen(session.sync_session, "after_commit", wake_runners, once=True)


handlers.register_result_handler(FACTS, command_settled)
