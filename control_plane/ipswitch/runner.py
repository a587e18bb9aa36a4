"""Running due switch steps: claimed under a lease, so any number of replicas share the work
and a replica dying mid-step hands its switches over when the lease lapses.

One runner per ``mailfleet serve``. It looks for due switches every
``MAILFLEET_IP_SWITCH_TICK_SECONDS`` and at once when a command a step waits for settles
(the result handler below makes that switch due and wakes the runners of this process).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import event, update
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.commands import handlers
from control_plane.commands.models import Command
from control_plane.db.base import utcnow
from control_plane.db.engine import Database
from control_plane.ipswitch import progress
from control_plane.ipswitch.models import IpSwitch, IpSwitchStep
from control_plane.ipswitch.workflow import AGENT_KINDS, Outcome, StepFailed, Workflow
from control_plane.provisioning.workflow import Fail
from control_plane.settings import Settings
from control_plane.workflows.runner import StepRunner, Wakers

wake_runners = Wakers()  # this process's switch runners: look for due switches now


class IpSwitchRunner(StepRunner[IpSwitch, IpSwitchStep]):
    """One per control-plane process (``serve`` starts it); any number per database."""

    model, step_model, parent, what = IpSwitch, IpSwitchStep, "switch_id", "ip switches"
    wakers = wake_runners

    def __init__(self, settings: Settings, db: Database, workflow: Workflow) -> None:
        self.settings, self.workflow = settings, workflow
        super().__init__(db, settings.ip_switch_lease_seconds, settings.ip_switch_tick_seconds)

    def current(self, row: IpSwitch, steps: Sequence[IpSwitchStep]) -> IpSwitchStep | None:
        return progress.current(row, steps)

    async def outcome(self, row: IpSwitch, step: IpSwitchStep) -> Outcome:
        try:
            if row.state == "rolling_back":
                return await self.workflow.undo(row, step)
            return await self.workflow.forward(row, step)
        except StepFailed as exc:
            return Fail(exc.detail)

    async def record(
        self,
        session: AsyncSession,
        row: IpSwitch,
        steps: Sequence[IpSwitchStep],
        step: IpSwitchStep,
        outcome: Outcome,
    ) -> None:
        await progress.Turn(session, self.settings, row, steps, utcnow()).record(step, outcome)


async def command_settled(session: AsyncSession, command: Command) -> None:
    """A command a step follows settled: that switch is due now."""
    result: Any = await session.execute(
        update(IpSwitch)
        .where(IpSwitch.step_command_id == command.id)
        .values(next_run_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if result.rowcount:
        event.listen(session.sync_session, "after_commit", wake_runners, once=True)


for _kind in AGENT_KINDS:
    handlers.register_result_handler(_kind, command_settled)
