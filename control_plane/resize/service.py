"""Recommendations, the resize preview, requesting a resize (checked before anything is
written) and reading resizes back."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any, Literal

from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.base import new_id, utcnow
from control_plane.db.lookup import get_by_id
from control_plane.db.pagination import Page, paginate
from control_plane.db.writes import flush_unique
from control_plane.errors import Conflict, InvalidInput, MailFleetError, NotFound
from control_plane.metrics.models import MetricSample
from control_plane.metrics.series import filesystem_series, sample_series
from control_plane.provisioning import events
from control_plane.provisioning.providers.base import Plan
from control_plane.provisioning.registry import OWNED_BY_CUSTOMER, ProviderRegistry
from control_plane.provisioning.schemas import PlanOut
from control_plane.resize import recommend
from control_plane.resize.models import ServerResize, ServerResizeStep
from control_plane.resize.runner import wake_runners
from control_plane.resize.schemas import (
    RecommendationOut,
    ResizeIn,
    ResizeOut,
    ResizePreview,
    ResizeStepOut,
    ResourceEvidence,
    StepPreview,
)
from control_plane.resize.workflow import STEPS, step_seconds
from control_plane.servers.models import Server
from control_plane.settings import Settings
from control_plane.usage.series import Series, TierReach, read_series
from control_plane.workflows.busy import refuse_while_another_runs
from control_plane.workflows.steps import ACTIVE_STATES, step_rows

BUSY = "a resize is already running for this server"
STEP_DOES = {
    "preconditions": "check the server is ready and its instance runs",
    "resize": "order the new plan from the provider",
    "wait": "wait until the provider has applied it (awaiting confirmation)",
    "verify": "check the new size is there (the agent's facts on live-resized VPSs)",
    "confirm": "confirm the resize with the provider (from here on it is kept)",
    "record": "record the plan and its price on the server, with an event",
    "revert": "only on failure: revert the provider's resize, so the server keeps its plan",
}
DOWNTIME = {
    "local": "none: the VPS's cgroup limits change while it runs",
    "hostwinds": "one restart of the instance while Hostwinds moves it (usually minutes)",
}
DEFAULT_DOWNTIME = "the provider restarts the instance to resize it (usually minutes)"


def plan_out(plan: Plan) -> PlanOut:
    return PlanOut(**vars(plan))


async def _catalog(providers: ProviderRegistry, server: Server) -> tuple[Plan, ...]:
    if server.provider in OWNED_BY_CUSTOMER:
        raise Conflict(
            f"a {server.provider} server is the customer's machine: MailFleet cannot resize it"
        )
    return (await providers.catalog(server.provider)).plans


def _current(catalog: tuple[Plan, ...], server: Server) -> Plan | None:
    return next((p for p in catalog if p.id == server.plan), None)


# -- recommendations ------------------------------------------------------------------------


async def recommendation(
    session: AsyncSession, settings: Settings, providers: ProviderRegistry, server: Server
) -> RecommendationOut:
    """The cheapest plan fitting the window's usage (see ``recommend``), or why none is."""
    end = utcnow().replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(days=settings.recommendation_window_days)
    base = {
        "server_id": server.id,
        "window_from": start,
        "window_to": end,
        "percentile": settings.recommendation_percentile,
        "headroom": settings.recommendation_headroom,
    }
    empty: dict[str, Any] = {
        "current_plan": None,
        "recommended_plan": None,
        "direction": None,
        "monthly_price_difference": None,
        "currency": None,
        "driver": None,
        "evidence": [],
    }
    if server.provider in OWNED_BY_CUSTOMER:
        reason = f"a {server.provider} server has no provider plan catalog to choose from"
        return RecommendationOut(**base, **empty, state="unknown", reason=reason)
    try:
        catalog = await _catalog(providers, server)
    except MailFleetError as exc:  # not configured here, or unreachable: no verdict
        reason = f"{server.provider}'s plans cannot be read: {exc.detail}"
        return RecommendationOut(**base, **empty, state="unknown", reason=reason)
    current = _current(catalog, server)
    if current is None:
        reason = f"the server's plan {server.plan!r} is not in {server.provider}'s catalog"
        return RecommendationOut(**base, **empty, state="unknown", reason=reason)
    series = await read_series(session, server.id, start, end, "1h", reach=TierReach.of(settings))
    wanted, missing = recommend.targets(
        series,
        current.vcpus,
        settings.recommendation_percentile,
        settings.recommendation_headroom,
        settings.recommendation_min_hours,
    )
    empty["current_plan"] = plan_out(current)
    if missing is not None:
        return RecommendationOut(**base, **empty, state="unknown", reason=missing)
    choice = recommend.choose(wanted, catalog, current, server.provider)
    best = choice.plan
    evidence = [
        ResourceEvidence(
            resource=t.resource,
            unit=t.unit,
            series=t.series,
            hours=t.hours,
            percentile=t.percentile,
            target=t.target,
            current=recommend.capacity(current, t.resource),
            recommended=recommend.capacity(best, t.resource) if best else None,
        )
        for t in wanted
    ]
    p = f"p{settings.recommendation_percentile:g}"
    if best is None:
        reason = (
            f"no plan of {server.provider} holds {p} × {settings.recommendation_headroom:g} "
            f"of every resource ({choice.driver} needs the most)"
        )
        return RecommendationOut(
            **base, **{**empty, "evidence": evidence, "driver": choice.driver},
            state="unknown", reason=reason,
        )  # fmt: skip
    driver = next(t for t in wanted if t.resource == choice.driver)
    difference = best.monthly_price - current.monthly_price
    if best.id == current.id:
        state, direction = "keep", None
        reason = f"{current.id} is the cheapest plan that fits; {driver.resource} sizes it"
    else:
        state = "resize"
        direction = direction_of(current, best)
        reason = (
            f"{best.id} is the cheapest plan that fits: {driver.resource} {p} "
            f"{_amount(driver)} → target {_amount(driver, driver.target)}"
        )
    return RecommendationOut(
        **base,
        state=state,
        reason=reason,
        current_plan=plan_out(current),
        recommended_plan=plan_out(best),
        direction=direction,
        monthly_price_difference=difference,
        currency=current.currency,
        driver=choice.driver,
        evidence=evidence,
    )


def direction_of(current: Plan, new: Plan) -> Literal["up", "down", "sideways"]:
    """Up or down by price; at the same price, by size."""
    if new.monthly_price != current.monthly_price:
        return "up" if new.monthly_price > current.monthly_price else "down"
    old, size = recommend.size(current), recommend.size(new)
    return "up" if size > old else "down" if size < old else "sideways"


def _amount(target: recommend.Target, value: float | None = None) -> str:
    value = target.percentile if value is None else value
    if target.unit == "cores":
        return f"{value:.2f} cores"
    return f"{value / recommend.GIB:.2f} GiB"


# -- resizes --------------------------------------------------------------------------------


async def preview(
    session: AsyncSession, providers: ProviderRegistry, server: Server, plan_id: str
) -> ResizePreview:
    """What resizing ``server`` to ``plan_id`` does and costs; raises what would refuse it
    (409: not ready, busy; 422 naming body.plan: unknown, same, or a disk too small)."""
    if server.state != "ready" or not server.instance_id:
        raise Conflict(f"server {server.id} is {server.state}, not ready: it cannot be resized")
    catalog = await _catalog(providers, server)
    new = next((p for p in catalog if p.id == plan_id), None)
    if new is None:
        offered = ", ".join(p.id for p in catalog)
        raise InvalidInput(
            f"unknown plan {plan_id!r} for {server.provider} (offered: {offered})",
            field="body.plan",
        )
    current = _current(catalog, server)
    if current is None:
        raise Conflict(f"the server's plan {server.plan!r} is not in {server.provider}'s catalog")
    if new.id == current.id:
        raise InvalidInput(f"the server is already on {new.id}", field="body.plan")
    if new.currency != current.currency:
        raise InvalidInput(f"{new.id} is priced in {new.currency}, not {current.currency}",
                           field="body.plan")  # fmt: skip
    if server.provider not in recommend.DISKLESS:
        await _disk_fits(session, server, current, new)
    await _not_busy(session, server.id)

    difference = new.monthly_price - current.monthly_price
    return ResizePreview(
        server_id=server.id,
        provider=server.provider,
        current_plan=plan_out(current),
        new_plan=plan_out(new),
        monthly_price=new.monthly_price,
        monthly_price_difference=difference,
        currency=current.currency,
        direction=direction_of(current, new),
        expected_downtime=DOWNTIME.get(server.provider, DEFAULT_DOWNTIME),
        steps=[StepPreview(name=name, does=STEP_DOES[name]) for name in STEPS],
    )


async def _disk_fits(session: AsyncSession, server: Server, current: Plan, new: Plan) -> None:
    """A disk is never shrunk (the providers that limit disks cannot), nor below what is used."""
    if new.disk_gb < current.disk_gb:
        raise InvalidInput(
            f"{server.provider} cannot shrink a disk: {new.id} has {new.disk_gb} GB, the "
            f"server {current.disk_gb} GB",
            field="body.plan",
        )
    used = await disk_used(session, server.id)
    if used is not None and new.disk_gb * recommend.GIB < used[1]:
        raise InvalidInput(
            f"{new.id}'s {new.disk_gb} GB disk is smaller than the {used[1] / recommend.GIB:.1f} "
            f"GB used on {used[0]}",
            field="body.plan",
        )


async def disk_used(session: AsyncSession, server_id: uuid.UUID) -> tuple[str, float] | None:
    """(mountpoint, bytes used) of the root (or largest) filesystem in the latest sample."""
    filesystems = await session.scalar(
        select(MetricSample.filesystems)
        .where(MetricSample.server_id == server_id)
        .order_by(MetricSample.sampled_at.desc())
        .limit(1)
    )
    if filesystems is None:
        return None
    values = sample_series({"filesystems": filesystems})
    name = recommend.disk_series({k: Series.of([], [], [], [], []) for k in values})
    if name is None:
        root = filesystem_series(recommend.FS_USED, "/")
        return ("/", values[root]) if root in values else None
    return name.partition(":")[2], values[name]


async def _not_busy(session: AsyncSession, server_id: uuid.UUID) -> None:
    if await active_resize(session, server_id) is not None:
        raise Conflict(BUSY)
    await refuse_while_another_runs(session, server_id, ServerResize, "resize")


async def request_resize(
    session: AsyncSession,
    settings: Settings,
    providers: ProviderRegistry,
    server: Server,
    data: ResizeIn,
    actor: str,
) -> tuple[ResizePreview, ServerResize | None]:
    """The preview, and (unless a dry run) the resize started."""
    found = await preview(session, providers, server, data.plan)
    if data.dry_run:
        return found, None
    now = utcnow()
    resize = ServerResize(
        id=new_id(),
        tenant_id=server.tenant_id,
        server_id=server.id,
        provider=server.provider,
        from_plan=found.current_plan.id,
        to_plan=found.new_plan.id,
        from_price=found.current_plan.monthly_price,
        to_price=found.new_plan.monthly_price,
        currency=found.currency,
        to_vcpus=found.new_plan.vcpus,
        to_memory_mb=found.new_plan.memory_mb,
        requested_by=actor,
        state="running",
        step_attempts=0,
        step_deadline_at=now + timedelta(seconds=step_seconds(settings)),
        next_run_at=now,
    )
    session.add(resize)
    session.add_all(
        step_rows(ServerResizeStep, STEPS, now, tenant_id=server.tenant_id, resize_id=resize.id)
    )
    await flush_unique(session, "server_id", BUSY)
    sign = "+" if found.monthly_price_difference >= 0 else ""
    events.record(
        session,
        server,
        "resize",
        f"resize {resize.id} requested by {actor}: {resize.from_plan} → {resize.to_plan} "
        f"({sign}{found.monthly_price_difference} {found.currency}/month)",
    )
    event.listen(session.sync_session, "after_commit", wake_runners, once=True)
    return found, resize


async def active_resize(session: AsyncSession, server_id: uuid.UUID) -> ServerResize | None:
    return await session.scalar(
        select(ServerResize).where(
            ServerResize.server_id == server_id, ServerResize.state.in_(ACTIVE_STATES)
        )
    )


async def get_resize(
    session: AsyncSession, server_id: uuid.UUID, resize_id: uuid.UUID
) -> ServerResize:
    resize = await get_by_id(session, ServerResize, resize_id, "resize")
    if resize.server_id != server_id:
        raise NotFound("resize", resize_id)
    return resize


async def list_resizes(
    session: AsyncSession, server_id: uuid.UUID, after: uuid.UUID | None, limit: int
) -> Page[ServerResize]:
    stmt = select(ServerResize).where(ServerResize.server_id == server_id)
    return await paginate(session, stmt, ServerResize.id, after, limit)


async def resize_out(session: AsyncSession, resize: ServerResize) -> ResizeOut:
    steps = list(
        await session.scalars(
            select(ServerResizeStep)
            .where(ServerResizeStep.resize_id == resize.id)
            .order_by(ServerResizeStep.position)
        )
    )
    fields = {
        name: getattr(resize, name)
        for name in ResizeOut.model_fields
        if name not in ("steps", "progress")
    }
    finished = sum(1 for s in steps if s.state not in ("pending", "running"))
    progress = 1.0 if resize.finished_at is not None else finished / max(len(steps), 1)
    return ResizeOut(
        **fields,
        progress=round(progress, 3),
        steps=[ResizeStepOut.model_validate(s) for s in steps],
    )
