"""Running due switch steps: claimed under a lease, so any number of replicas share the work
and a replica dying mid-step hands its switches over when the lease lapses.

One runner per ``mailfleet serve``. It looks for due switches every
``MAILFLEET_IP_SWITCH_TICK_SECONDS`` and at once when a command a step waits for settles
(the result handler below makes that switch due and wakes the runners of this process).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import event, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.commands import handlers
from control_plane.commands.models import Command
from control_plane.db.base import utcnow
from control_plane.db.engine import Database
from control_plane.db.leases import Leases
from control_plane.errors import MailFleetError
from control_plane.ipswitch import progress
from control_plane.ipswitch.models import IpSwitch, IpSwitchStep
from control_plane.ipswitch.workflow import AGENT_KINDS, Outcome, StepFailed, Workflow
from control_plane.provisioning.workflow import Fail, Retry, error_outcome
from control_plane.settings import Settings

log = logging.getLogger(__name__)
CONCURRENCY = 20

_wakers: list[Callable[[], None]] = []


def wake_runners(_session: Any = None) -> None:
    """Make this process's runners look for due switches now (after a commit)."""
    for wake in list(_wakers):
        wake()


class IpSwitchRunner:
    """One per control-plane process (``serve`` starts it); any number per database."""

    def __init__(self, settings: Settings, db: Database, workflow: Workflow) -> None:
        self.settings, self.db, self.workflow = settings, db, workflow
        self.leases = Leases(db, IpSwitch, settings.ip_switch_lease_seconds, "ip switches")
        self.owner = self.leases.owner
        self._wake = asyncio.Event()
        self._running: dict[uuid.UUID, asyncio.Task[None]] = {}

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Claim and run due steps until cancelled; leases are let go on the way out."""
        _wakers.append(self.wake)
        try:
            while True:
                free = CONCURRENCY - len(self._running)
                if free > 0:
                    try:
                        for switch in await self.claim(free):
                            task = asyncio.create_task(self._run_step(switch))
                            self._running[switch.id] = task
                            task.add_done_callback(functools.partial(self._done, switch.id))
                    except Exception:
                        log.exception("ip switches: claiming due switches failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.ip_switch_tick_seconds)
                self._wake.clear()
        finally:
            _wakers.remove(self.wake)
            await self.leases.let_go(self._running.values())

    def _done(self, switch_id: uuid.UUID, _task: asyncio.Task[None]) -> None:
        self._running.pop(switch_id, None)
        self._wake.set()

    async def claim(self, limit: int) -> list[IpSwitch]:
        return await self.leases.claim(
            lambda now: (IpSwitch.next_run_at <= now,),
            IpSwitch.next_run_at,
            limit,
            skip=self._running,
        )

    async def _run_step(self, switch: IpSwitch) -> None:
        async with self.db.session() as session:
            steps = await _steps(session, switch.id)
        step = progress.current(switch, steps)
        if step is None:  # nothing left (a stale next_run_at): clear it
            await self.db.transact(lambda s: self._apply(s, switch, None, None))
            return
        renew = asyncio.create_task(self.leases.keep(switch.id))
        try:
            outcome = await self._outcome(switch, step)
        finally:
            renew.cancel()
        try:
            await self.db.transact(lambda s: self._apply(s, switch, step, outcome))
        except Exception:
            log.exception("ip switches: recording the outcome for %s failed", switch.id)

    async def _outcome(self, switch: IpSwitch, step: IpSwitchStep) -> Outcome:
        undoing = switch.state == "rolling_back"
        try:
            if undoing:
                return await self.workflow.undo(switch, step)
            return await self.workflow.forward(switch, step)
        except StepFailed as exc:
            return Fail(exc.detail)
        except MailFleetError as exc:
            return error_outcome(exc)
        except Exception as exc:
            log.exception("ip switches: step %s of %s failed", step.name, switch.id)
            return Retry(f"internal error: {type(exc).__name__}")

    async def _apply(
        self,
        session: AsyncSession,
        claimed: IpSwitch,
        step: IpSwitchStep | None,
        outcome: Outcome | None,
    ) -> None:
        switch = await self.leases.take_back(session, claimed.id)
        if switch is None:
            return
        steps = await _steps(session, switch.id)
        if step is None or outcome is None or switch.state != claimed.state:
            switch.next_run_at = utcnow() if progress.current(switch, steps) else None
            return
        row = next(s for s in steps if s.id == step.id)
        turn = progress.Turn(session, self.settings, switch, steps, utcnow())
        await turn.record(row, outcome)
        if switch.state != claimed.state:
            log.info("ip switches: %s is %s (%s)", switch.id, switch.state, switch.error or "")


async def _steps(session: AsyncSession, switch_id: uuid.UUID) -> list[IpSwitchStep]:
    rows = await session.scalars(
        select(IpSwitchStep)
        .where(IpSwitchStep.switch_id == switch_id)
        .order_by(IpSwitchStep.position)
    )
    return list(rows)


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
