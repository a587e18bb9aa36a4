"""How an outcome moves a switch: its steps' states, the rollback cursor, the next look.

Pure bookkeeping on the rows (in the runner's transaction, under the switch's lease); the
steps themselves are in ``workflow.py``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.ips import service as ips
from control_plane.ipswitch.models import IpSwitch, IpSwitchStep
from control_plane.ipswitch.workflow import ACTOR, UNDOABLE, Done, Fail, Outcome, Retry, Wait
from control_plane.settings import Settings

RETRY_CAP_SECONDS = 60.0
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


async def record(
    session: AsyncSession,
    settings: Settings,
    switch: IpSwitch,
    steps: Sequence[IpSwitchStep],
    step: IpSwitchStep,
    outcome: Outcome,
    now: datetime,
) -> None:
    undoing = switch.state == "rolling_back"
    if isinstance(outcome, Done | Wait | Retry):
        for name, value in outcome.changes.items():
            setattr(switch, name, value)
    if isinstance(outcome, Wait | Retry):
        deadline = switch.step_deadline_at
        if deadline is None or now < deadline:
            _later(settings, switch, step, outcome, now)
            return
        limit = step_seconds(settings, step.name)
        what = f"undoing {step.name}" if undoing else step.name
        outcome = Fail(f"{what} did not finish within {limit:.0f} s: {outcome.detail}")
    if undoing:
        await (_undone if isinstance(outcome, Done) else _undo_failed)(
            session, settings, switch, steps, step, outcome, now
        )
    elif isinstance(outcome, Done):
        await _advance(session, settings, switch, steps, step, outcome, now)
    else:
        assert isinstance(outcome, Fail)
        await _failed(session, settings, switch, steps, step, outcome.reason, now)


def _later(
    settings: Settings, switch: IpSwitch, step: IpSwitchStep, outcome: Wait | Retry, now: datetime
) -> None:
    if switch.state != "rolling_back":
        step.detail = outcome.detail
    if isinstance(outcome, Retry):
        switch.step_attempts += 1
        switch.step_command_id = None
        delay = min(RETRY_CAP_SECONDS, settings.ip_switch_tick_seconds * 2**switch.step_attempts)
        delay *= random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not a secret
    else:
        delay = min(outcome.seconds or settings.ip_switch_tick_seconds, RETRY_CAP_SECONDS)
    switch.next_run_at = now + timedelta(seconds=delay)


def _enter(settings: Settings, switch: IpSwitch, name: str, at: datetime) -> None:
    switch.step_command_id, switch.step_attempts = None, 0
    switch.step_deadline_at = at + timedelta(seconds=step_seconds(settings, name))
    switch.next_run_at = at


async def _advance(
    session: AsyncSession,
    settings: Settings,
    switch: IpSwitch,
    steps: Sequence[IpSwitchStep],
    step: IpSwitchStep,
    outcome: Done,
    now: datetime,
) -> None:
    step.state = "skipped" if outcome.skipped else "done"
    step.finished_at, step.detail = now, outcome.detail
    if step.name == "withdraw":
        switch.next_run_at = switch.step_deadline_at = switch.step_command_id = None
        return
    following = steps[step.position + 1]
    if step.name == "drain":
        switch.state, switch.finished_at = "succeeded", now
        due = now + timedelta(seconds=settings.ip_switch_dns_grace_seconds)
        _enter(settings, switch, following.name, due)
        await _events(session, switch, f"switch {switch.id} succeeded: sending moved", now)
        return
    following.state, following.started_at = "running", now
    _enter(settings, switch, following.name, now)


async def _failed(
    session: AsyncSession,
    settings: Settings,
    switch: IpSwitch,
    steps: Sequence[IpSwitchStep],
    step: IpSwitchStep,
    reason: str,
    now: datetime,
) -> None:
    step.state, step.finished_at, step.detail = "failed", now, reason
    if step.name == "withdraw":
        switch.error = f"withdrawing {switch.from_ip} from DNS failed: {reason}; it stays published"
        switch.next_run_at = switch.step_deadline_at = switch.step_command_id = None
        return
    switch.error = f"{step.name}: {reason}"
    for later in steps[step.position + 1 :]:
        later.state = "skipped"
    switch.state = "rolling_back"
    # A failed snat may have been applied (a command that timed out): it is undone too.
    start = step.position if step.name == "snat" else step.position - 1
    await _cursor(session, settings, switch, steps, start, now)


async def _cursor(
    session: AsyncSession,
    settings: Settings,
    switch: IpSwitch,
    steps: Sequence[IpSwitchStep],
    start: int,
    now: datetime,
) -> None:
    """Point the rollback at the next step to undo at or below ``start`` (none: done)."""
    for position in range(start, -1, -1):
        candidate = steps[position]
        if candidate.name in UNDOABLE and candidate.state in ("done", "failed"):
            switch.rollback_position = position
            _enter(settings, switch, candidate.name, now)
            return
    switch.state, switch.finished_at, switch.rollback_position = "rolled_back", now, None
    switch.next_run_at = switch.step_deadline_at = switch.step_command_id = None
    await _events(
        session, switch, f"switch {switch.id} rolled back: {switch.error}; sending unchanged", now
    )


async def _undone(
    session: AsyncSession,
    settings: Settings,
    switch: IpSwitch,
    steps: Sequence[IpSwitchStep],
    step: IpSwitchStep,
    outcome: Outcome,
    now: datetime,
) -> None:
    assert isinstance(outcome, Done)
    if step.state == "done":
        step.state = "rolled_back"
    step.detail = f"{step.detail} — undone: {outcome.detail}"
    step.finished_at = now
    await _cursor(session, settings, switch, steps, step.position - 1, now)


async def _undo_failed(
    session: AsyncSession,
    settings: Settings,
    switch: IpSwitch,
    steps: Sequence[IpSwitchStep],
    step: IpSwitchStep,
    outcome: Outcome,
    now: datetime,
) -> None:
    """An undo failed: stop, and say exactly what is left as it is."""
    reason = outcome.reason if isinstance(outcome, Fail) else str(outcome)
    step.detail = f"{step.detail} — undo failed: {reason}"
    left = [
        LEFT[s.name].format(to=switch.to_ip)
        for s in steps[: step.position + 1]
        if s.name in UNDOABLE and s.state in ("done", "failed")
    ]
    switch.error = (
        f"{switch.error}; rolling back {step.name} failed: {reason}; left as it is: "
        + "; ".join(left)
    )
    switch.state, switch.finished_at, switch.rollback_position = "failed", now, None
    switch.next_run_at = switch.step_deadline_at = switch.step_command_id = None
    await _events(session, switch, f"switch {switch.id} failed: {switch.error}", now)


async def _events(session: AsyncSession, switch: IpSwitch, detail: str, now: datetime) -> None:
    """The same ``switch`` event on both addresses' histories."""
    for address in (switch.from_ip, switch.to_ip):
        for row in await ips.live_ips(session, switch.server_id):
            if row.address == address:
                await ips.record_event(session, row, "switch", detail, ACTOR, now)
