"""Requesting an IP switch (checked before anything is written) and reading switches back."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.base import new_id, utcnow
from control_plane.db.lookup import get_by_id
from control_plane.db.pagination import Page, paginate
from control_plane.db.writes import flush_unique
from control_plane.errors import Conflict, InvalidInput, NotFound
from control_plane.ips import service as ips
from control_plane.ips.models import IpAddress
from control_plane.ipswitch import progress
from control_plane.ipswitch.models import IpSwitch, IpSwitchStep
from control_plane.ipswitch.runner import wake_runners
from control_plane.ipswitch.schemas import IpSwitchIn, IpSwitchOut, IpSwitchStepOut
from control_plane.ipswitch.workflow import STEPS, usable_problem
from control_plane.servers.models import Server
from control_plane.settings import Settings
from control_plane.workflows.busy import refuse_while_another_runs
from control_plane.workflows.steps import ACTIVE_STATES, step_rows

BUSY = "a switch is already running for this server"


async def request_switch(
    session: AsyncSession, settings: Settings, server: Server, data: IpSwitchIn, actor: str
) -> IpSwitch:
    """Start a switch of ``server``'s sending address (409 while one runs; 422 naming the
    field for an address that cannot take over)."""
    if data.auto and data.to_ip is not None:
        raise InvalidInput("give to_ip or auto, not both", field="body.auto")
    if not data.auto and data.to_ip is None:
        raise InvalidInput("give the address to switch to, or auto: true", field="body.to_ip")
    if await active_switch(session, server.id) is not None:
        raise Conflict(BUSY)
    await refuse_while_another_runs(session, server.id, IpSwitch, "switch")
    sending = await ips.sending_ip(session, server.id)
    if sending is None:
        raise Conflict(f"server {server.id} has no sending address to switch from")
    live = await ips.live_ips(session, server.id)
    if data.auto:
        target = best_standby(live, sending)
        if target is None:
            raise InvalidInput(
                "no standby address of this server is clean on every list, not paused and "
                "past its warmup",
                field="body.auto",
            )
    else:
        target = _chosen(live, sending, str(data.to_ip))
    now = utcnow()
    switch = IpSwitch(
        id=new_id(),
        tenant_id=server.tenant_id,
        server_id=server.id,
        from_ip=sending.address,
        to_ip=target.address,
        auto=data.auto,
        requested_by=actor,
        state="running",
        step_attempts=0,
        to_was_published=target.dns_published,
        step_deadline_at=now + timedelta(seconds=progress.step_seconds(settings, STEPS[0])),
        next_run_at=now,
    )
    session.add(switch)
    session.add_all(
        step_rows(IpSwitchStep, STEPS, now, tenant_id=server.tenant_id, switch_id=switch.id)
    )
    await flush_unique(session, "server_id", BUSY)
    detail = f"switch {switch.id} requested: {sending.address} → {target.address}"
    for row in (sending, target):
        await ips.record_event(session, row, "switch", detail, actor, now)
    event.listen(session.sync_session, "after_commit", wake_runners, once=True)
    return switch


def _chosen(live: list[IpAddress], sending: IpAddress, address: str) -> IpAddress:
    target = next((row for row in live if row.address == address), None)
    if target is None:
        raise InvalidInput(f"{address} is not an address of this server", field="body.to_ip")
    if target.id == sending.id:
        raise InvalidInput(f"{address} is already the sending address", field="body.to_ip")
    problem = usable_problem(target)
    if problem is not None:
        raise InvalidInput(problem, field="body.to_ip")
    return target


def best_standby(live: list[IpAddress], sending: IpAddress) -> IpAddress | None:
    """The standby address to take over: clean, not paused, warmup finished (or no plan),
    highest score (then the longest assigned)."""
    fit = [
        row
        for row in live
        if row.id != sending.id
        and row.role == "standby"
        and row.listing == "clean"
        and row.paused_at is None
        and (row.warmup_plan is None or row.warmup_done_at is not None)
    ]
    fit.sort(key=lambda row: (-(row.score or 0), row.assigned_at))
    return fit[0] if fit else None


async def active_switch(session: AsyncSession, server_id: uuid.UUID) -> IpSwitch | None:
    return await session.scalar(
        select(IpSwitch).where(IpSwitch.server_id == server_id, IpSwitch.state.in_(ACTIVE_STATES))
    )


async def get_switch(session: AsyncSession, server_id: uuid.UUID, switch_id: uuid.UUID) -> IpSwitch:
    switch = await get_by_id(session, IpSwitch, switch_id, "IP switch")
    if switch.server_id != server_id:
        raise NotFound("IP switch", switch_id)
    return switch


async def list_switches(
    session: AsyncSession, server_id: uuid.UUID, after: uuid.UUID | None, limit: int
) -> Page[IpSwitch]:
    stmt = select(IpSwitch).where(IpSwitch.server_id == server_id)
    return await paginate(session, stmt, IpSwitch.id, after, limit)


async def switch_out(session: AsyncSession, switch: IpSwitch) -> IpSwitchOut:
    steps = await session.scalars(
        select(IpSwitchStep)
        .where(IpSwitchStep.switch_id == switch.id)
        .order_by(IpSwitchStep.position)
    )
    fields = {name: getattr(switch, name) for name in IpSwitchOut.model_fields if name != "steps"}
    return IpSwitchOut(**fields, steps=[IpSwitchStepOut.model_validate(s) for s in steps])
