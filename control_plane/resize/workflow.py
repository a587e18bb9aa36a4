"""The resize's steps: what each does, and the one undo (``revert``).

Steps, in order (``STEPS``)::

    preconditions → resize → wait → verify → confirm → record  ⇒ succeeded
    any of them fails ⇒ revert (the provider's resize undone, if it got that far) ⇒ failed

Each step looks at the resize and the instance as the provider reports them and returns an
outcome; the runner records it under the resize's lease. Steps are idempotent, so one cut
short by a crash runs again: ``resize`` finds a resize already under way instead of ordering
a second, ``confirm`` finds one confirmed, ``revert`` finds nothing left to revert.

Verification: where the provider changes limits live (``local``: the VPS's cgroup), the
agent's facts must show the new memory and CPUs; elsewhere the new size shows in the guest
only after the provider's restart, and the instance's plan after confirmation, which
``confirm`` checks.
"""

from __future__ import annotations

import os

from sqlalchemy import select

from control_plane.costs import meter
from control_plane.db.base import utcnow
from control_plane.db.engine import Database
from control_plane.errors import NotFound
from control_plane.provisioning import events
from control_plane.provisioning.providers.base import Instance, Provider
from control_plane.provisioning.registry import ProviderRegistry
from control_plane.provisioning.workflow import Fail, Wait
from control_plane.resize.models import ServerResize, ServerResizeStep
from control_plane.servers.models import Server
from control_plane.settings import Settings
from control_plane.workflows import agent
from control_plane.workflows.runner import Outcome
from control_plane.workflows.steps import Done

STEPS = ("preconditions", "resize", "wait", "verify", "confirm", "record", "revert")
FORWARD = STEPS[:-1]
PREFIX = "resize"
FACTS = "collect-facts"
LIVE_LIMITS = frozenset({"local"})  # providers whose resize the running guest sees at once
MIB = 1024 * 1024


def step_seconds(settings: Settings) -> float:
    return settings.resize_step_timeout_seconds


class Workflow:
    """The steps, with what they touch."""

    def __init__(self, settings: Settings, db: Database, providers: ProviderRegistry) -> None:
        self.settings, self.db, self.providers = settings, db, providers

    async def forward(self, resize: ServerResize, step: ServerResizeStep) -> Outcome:
        outcome: Outcome = await getattr(self, f"_{step.name}")(resize)
        return outcome

    async def _preconditions(self, resize: ServerResize) -> Outcome:
        server, provider = await self._server(resize)
        if server.state != "ready":
            return Fail(f"the server is {server.state}, not ready")
        if server.plan != resize.from_plan:
            return Fail(f"the server is on {server.plan} now, not {resize.from_plan}")
        instance = await provider.get(_instance_id(server))
        if instance.status != "running":
            return Fail(f"instance {instance.id} is {instance.status}, not running")
        return Done(f"server ready; instance {instance.id} runs on {instance.plan}")

    async def _resize(self, resize: ServerResize) -> Outcome:
        server, provider = await self._server(resize)
        instance = await provider.get(_instance_id(server))
        if instance.status in ("resizing", "resize_pending_confirm"):
            return Done(f"the resize to {resize.to_plan} is already under way")
        instance = await provider.resize(instance.id, resize.to_plan)
        return Done(
            f"{resize.provider} accepted the resize to {resize.to_plan} ({instance.status})"
        )

    async def _wait(self, resize: ServerResize) -> Outcome:
        server, provider = await self._server(resize)
        instance = await provider.get(_instance_id(server))
        if instance.status == "resize_pending_confirm":
            return Done(f"instance {instance.id} resized, awaiting confirmation")
        if instance.status == "resizing":
            return Wait(f"instance {instance.id} is resizing", self.settings.resize_tick_seconds)
        if instance.status == "running" and instance.plan == resize.to_plan:
            return Done(f"{resize.provider} applied {resize.to_plan} without a confirmation")
        return Fail(f"instance {instance.id} is {instance.status} on {instance.plan}")

    async def _verify(self, resize: ServerResize) -> Outcome:
        if resize.provider not in LIVE_LIMITS:
            return Done(
                f"{resize.provider} shows the new size after its restart; the instance's plan "
                "is checked once confirmed",
                skipped=True,
            )
        found = await agent.result(
            self.db, resize, PREFIX, FACTS, {}, "facts", step_seconds(self.settings)
        )
        if not isinstance(found, dict):
            return found
        cgroup = found.get("cgroup")
        if not isinstance(cgroup, dict):
            return Fail("the agent reports no VPS cgroup, so the new limits cannot be seen")
        # The guest sees the plan's limits capped by this host (the VPS shares its machine).
        import psutil  # type: ignore[import-untyped]  # here only: not with serve

        memory = min(resize.to_memory_mb * MIB, int(psutil.virtual_memory().total))
        cpus = min(float(resize.to_vcpus), float(os.cpu_count() or 1))
        seen_memory = int(found.get("memory_total_bytes") or 0)
        seen_cpus = float(cgroup.get("cpus") or 0)
        if seen_memory != memory or abs(seen_cpus - cpus) > 0.01:
            return Fail(
                f"the agent sees {seen_memory / MIB:.0f} MiB and {seen_cpus:g} CPUs, not "
                f"{memory / MIB:.0f} MiB and {cpus:g}"
            )
        return Done(f"the agent sees {seen_memory / MIB:.0f} MiB and {seen_cpus:g} CPUs")

    async def _confirm(self, resize: ServerResize) -> Outcome:
        server, provider = await self._server(resize)
        instance = await provider.get(_instance_id(server))
        if instance.status == "resize_pending_confirm":
            instance = await provider.confirm_resize(instance.id)
        return _on_plan(instance, resize.to_plan, "confirmed")

    async def _record(self, resize: ServerResize) -> Outcome:
        async with self.db.session() as session:
            server = await session.get(Server, resize.server_id)
            if server is None:
                raise NotFound("server", resize.server_id)
            if server.plan != resize.to_plan or server.plan_monthly_price != resize.to_price:
                server.plan = resize.to_plan
                server.plan_monthly_price, server.plan_currency = resize.to_price, resize.currency
                events.record(
                    session,
                    server,
                    "resize",
                    f"resize {resize.id}: now on {resize.to_plan} "
                    f"({resize.to_price} {resize.currency}/month, was {resize.from_plan} at "
                    f"{resize.from_price})",
                )
            confirmed = await session.scalar(
                select(ServerResizeStep.finished_at).where(
                    ServerResizeStep.resize_id == resize.id, ServerResizeStep.name == "confirm"
                )
            )
            # The provider bills the new plan from the confirmation, not from this record.
            await meter.change_plan(session, server, resize.to_plan, confirmed or utcnow())
        return Done(f"the server is on {resize.to_plan} at {resize.to_price} {resize.currency}")

    async def revert(self, resize: ServerResize) -> Outcome:
        """Undo the provider's resize if it got that far (the only step that changes the
        instance before it is confirmed)."""
        server, provider = await self._server(resize)
        instance = await provider.get(_instance_id(server))
        if instance.status == "resizing":
            return Wait(
                f"instance {instance.id} is still resizing", self.settings.resize_tick_seconds
            )
        if instance.status == "resize_pending_confirm":
            instance = await provider.revert_resize(instance.id)
            return _on_plan(instance, resize.from_plan, "reverted")
        return Done(
            f"nothing to revert: instance {instance.id} is {instance.status} on {instance.plan}"
        )

    async def _server(self, resize: ServerResize) -> tuple[Server, Provider]:
        async with self.db.session() as session:
            server = await session.get(Server, resize.server_id)
        if server is None:
            raise NotFound("server", resize.server_id)
        entry = await self.providers.get(resize.provider, field="provider")
        return server, entry.provider


def _instance_id(server: Server) -> str:
    if not server.instance_id:
        raise NotFound("instance of server", server.id)
    return server.instance_id


def _on_plan(instance: Instance, plan: str, what: str) -> Outcome:
    if instance.plan != plan:
        return Fail(f"{what}, but instance {instance.id} reports plan {instance.plan}, not {plan}")
    return Done(f"{what}: instance {instance.id} is on {plan} ({instance.status})")
