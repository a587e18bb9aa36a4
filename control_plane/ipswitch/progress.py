"""How an outcome moves a switch: its steps' states, the rollback cursor, the next look.

Bookkeeping on the rows, in the runner's transaction under the switch's lease; the steps
themselves are in ``workflow.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.incidents import service as incidents
from control_plane.incidents.signals import server_signal
from control_plane.ips import service as ips
from control_plane.ipswitch import agent
from control_plane.ipswitch.models import IpSwitch, IpSwitchStep
from control_plane.ipswitch.workflow import ACTOR, UNDOABLE, Outcome
from control_plane.provisioning.workflow import Fail, Retry, Wait
from control_plane.servers.models import Server
from control_plane.settings import Settings
from control_plane.workflows.runner import later_seconds
from control_plane.workflows.steps import Done

CHECK = "ip.switch"
LEFT = {
    "ptr": "the PTR of {to} still points to the mail host",
    "dns": "{to} is still published in DNS (A, SPF)",
    "snat": "outbound mail still leaves from {to} (SNAT)",
}


def current(switch: IpSwitch, steps: Sequence[IpSwitchStep]) -> IpSwitchStep | None:
    """The step (or, rolling back, the step to undo) the switch is at."""
    if switch.state == "rolling_back":
        return next((s for s in steps if s.position == switch.rollback_position), None)
    open_steps = [s for s in steps if s.state in ("pending", "running")]
    if switch.state == "running":
        open_steps = [s for s in open_steps if s.name != "withdraw"]
    elif switch.state != "succeeded":
        return None
    return open_steps[0] if open_steps else None


def step_seconds(settings: Settings, name: str) -> float:
    """How long a step may take in all (drain: its wait on top)."""
    extra = settings.ip_switch_drain_seconds if name == "drain" else 0.0
    return settings.ip_switch_step_timeout_seconds + extra


@dataclass
class Turn:
    """One outcome being recorded: the switch with its steps, at ``now``."""

    session: AsyncSession
    settings: Settings
    switch: IpSwitch
    steps: Sequence[IpSwitchStep]
    now: datetime

    async def record(self, step: IpSwitchStep, outcome: Outcome) -> None:
        switch, undoing = self.switch, self.switch.state == "rolling_back"
        if isinstance(outcome, Done | Wait | Retry):
            for name, value in outcome.changes.items():
                setattr(switch, name, value)
        if isinstance(outcome, Wait | Retry):
            deadline = switch.step_deadline_at
            if deadline is None or self.now < deadline:
                self._later(step, outcome)
                return
            limit = step_seconds(self.settings, step.name)
            what = f"undoing {step.name}" if undoing else step.name
            outcome = Fail(f"{what} did not finish within {limit:.0f} s: {outcome.message}")
        if undoing and isinstance(outcome, Done):
            await self._undone(step, outcome)
        elif undoing:
            assert isinstance(outcome, Fail)
            await self._undo_failed(step, outcome.reason)
        elif isinstance(outcome, Done):
            await self._advance(step, outcome)
        else:
            assert isinstance(outcome, Fail)
            await self._failed(step, outcome.reason)

    def _later(self, step: IpSwitchStep, outcome: Wait | Retry) -> None:
        switch, settings = self.switch, self.settings
        if switch.state != "rolling_back":
            step.detail = outcome.message
        if isinstance(outcome, Retry):
            switch.step_attempts += 1
            switch.step_command_id = None
        delay = later_seconds(outcome, switch.step_attempts, settings.ip_switch_tick_seconds)
        switch.next_run_at = self.now + timedelta(seconds=delay)

    def _enter(self, name: str, at: datetime) -> None:
        switch = self.switch
        switch.step_command_id, switch.step_attempts = None, 0
        switch.step_deadline_at = at + timedelta(seconds=step_seconds(self.settings, name))
        switch.next_run_at = at

    def _idle(self) -> None:
        switch = self.switch
        switch.next_run_at = switch.step_deadline_at = switch.step_command_id = None

    async def _advance(self, step: IpSwitchStep, outcome: Done) -> None:
        switch, now = self.switch, self.now
        step.state = "skipped" if outcome.skipped else "done"
        step.finished_at, step.detail = now, outcome.message
        if step.name == "withdraw":
            self._idle()
            return
        following = self.steps[step.position + 1]
        if step.name == "drain":
            switch.state, switch.finished_at = "succeeded", now
            due = now + timedelta(seconds=self.settings.ip_switch_dns_grace_seconds)
            following.detail = (
                f"{switch.from_ip} leaves the A record and SPF at {due:%Y-%m-%d %H:%M:%S} UTC"
            )
            self._enter(following.name, due)
            await self._events(f"switch {switch.id} succeeded: sending moved")
            await self._signal("ok", "info", f"{switch.to_ip} sends (switch {switch.id})")
            return
        following.state, following.started_at = "running", now
        self._enter(following.name, now)

    async def _failed(self, step: IpSwitchStep, reason: str) -> None:
        switch = self.switch
        step.state, step.finished_at, step.detail = "failed", self.now, reason
        if step.name == "withdraw":
            switch.error = (
                f"withdrawing {switch.from_ip} from DNS failed: {reason}; it stays published"
            )
            self._idle()
            return
        switch.error = f"{step.name}: {reason}"
        for later in self.steps[step.position + 1 :]:
            later.state = "skipped"
        switch.state = "rolling_back"
        # A failed snat that reached the agent may have been applied (a command that timed
        # out): it is undone too. One never delivered changed nothing.
        delivered = await agent.settle(self.session, switch.step_command_id)
        await self._cursor(
            step.position if step.name == "snat" and delivered else step.position - 1
        )

    async def _cursor(self, start: int) -> None:
        """Point the rollback at the next step to undo at or below ``start`` (none: done)."""
        switch = self.switch
        for position in range(start, -1, -1):
            candidate = self.steps[position]
            if candidate.name in UNDOABLE and candidate.state in ("done", "failed"):
                switch.rollback_position = position
                self._enter(candidate.name, self.now)
                return
        switch.state, switch.finished_at, switch.rollback_position = "rolled_back", self.now, None
        self._idle()
        await self._events(f"switch {switch.id} rolled back: {switch.error}; sending unchanged")
        await self._signal(
            "failing",
            "warning",
            f"switch {switch.id} to {switch.to_ip} rolled back ({switch.error}); mail still "
            f"leaves from {switch.from_ip}",
        )

    async def _undone(self, step: IpSwitchStep, outcome: Done) -> None:
        if step.state == "done":
            step.state = "rolled_back"
        step.detail = f"{step.detail} — undone: {outcome.message}"
        step.finished_at = self.now
        await self._cursor(step.position - 1)

    async def _undo_failed(self, step: IpSwitchStep, reason: str) -> None:
        """An undo failed: stop, and say exactly what is left as it is."""
        switch = self.switch
        await agent.settle(self.session, switch.step_command_id)
        step.detail = f"{step.detail} — undo failed: {reason}"
        left = [
            LEFT[s.name].format(to=switch.to_ip)
            for s in self.steps[: step.position + 1]
            if s.name in UNDOABLE and s.state in ("done", "failed")
        ]
        switch.error = (
            f"{switch.error}; rolling back {step.name} failed: {reason}; left as it is: "
            + "; ".join(left)
        )
        switch.state, switch.finished_at, switch.rollback_position = "failed", self.now, None
        self._idle()
        await self._events(f"switch {switch.id} failed: {switch.error}")
        await self._signal("failing", "critical", f"switch {switch.id} failed: {switch.error}")

    async def _signal(
        self,
        state: Literal["ok", "failing"],
        severity: Literal["critical", "warning", "info"],
        summary: str,
    ) -> None:
        """``ip.switch`` on the server: a switch rolled back (warning) or left half-undone
        (critical) opens an incident; the next one that succeeds resolves it."""
        server = await self.session.get(Server, self.switch.server_id)
        if server is not None:  # a deleted server's incidents went with it
            signal = server_signal(server, CHECK, state, severity, summary)
            await incidents.observe(self.session, [signal], self.now)

    async def _events(self, detail: str) -> None:
        """The same ``switch`` event on both addresses' histories."""
        switch = self.switch
        for row in await ips.live_ips(self.session, switch.server_id):
            if row.address in (switch.from_ip, switch.to_ip):
                await ips.record_event(self.session, row, "switch", detail, ACTOR, self.now)
