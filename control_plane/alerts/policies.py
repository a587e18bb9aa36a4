"""Escalation policies: ordered steps of channels, a default per tenant, assignments.

A tenant's first policy is its default; the fleet's own policies (no tenant) have a default
too, which applies to tenants with none. Workspaces and servers may name a policy of their
own tenant.
"""

from __future__ import annotations

import json
import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.alerts.models import AlertChannel, EscalationPolicy
from control_plane.alerts.owned import list_owned, same_tenant, unique_name
from control_plane.alerts.schemas import PolicyCreate, PolicyOut, PolicyUpdate, StepIn, StepOut
from control_plane.db.base import utcnow
from control_plane.db.lookup import get_by_id
from control_plane.errors import InvalidInput


def policy_out(policy: EscalationPolicy) -> PolicyOut:
    return PolicyOut(
        id=policy.id,
        tenant_id=policy.tenant_id,
        name=policy.name,
        steps=[StepOut(**step) for step in json.loads(policy.steps)],
        repeat=policy.repeat,
        repeat_interval_minutes=policy.repeat_interval_minutes,
        is_default=policy.is_default,
        created_at=policy.created_at,
        updated_at=policy.updated_at,
    )


async def _steps_json(
    session: AsyncSession, tenant_id: uuid.UUID | None, steps: list[StepIn]
) -> str:
    """Every channel must exist and belong to the policy's tenant (or both to the fleet)."""
    for i, step in enumerate(steps):
        for j, channel_id in enumerate(step.channel_ids):
            found = (
                await session.execute(
                    select(AlertChannel.tenant_id).where(AlertChannel.id == channel_id)
                )
            ).first()
            if found is None or found[0] != tenant_id:
                raise InvalidInput(
                    f"no alert channel {channel_id} of this policy's tenant",
                    field=f"body.steps.{i}.channel_ids.{j}",
                )
    return json.dumps(
        [
            {"channel_ids": [str(c) for c in step.channel_ids], "wait_minutes": step.wait_minutes}
            for step in steps
        ]
    )


async def _policies_of(
    session: AsyncSession, tenant_id: uuid.UUID | None
) -> list[EscalationPolicy]:
    stmt = (
        select(EscalationPolicy)
        .where(same_tenant(EscalationPolicy.tenant_id, tenant_id))
        .order_by(EscalationPolicy.id)
        .with_for_update()
    )
    return list((await session.scalars(stmt)).all())


async def _make_default(session: AsyncSession, policy: EscalationPolicy) -> None:
    for other in await _policies_of(session, policy.tenant_id):
        other.is_default = other.id == policy.id
    policy.is_default = True


async def create_policy(
    session: AsyncSession, tenant_id: uuid.UUID | None, data: PolicyCreate
) -> EscalationPolicy:
    await unique_name(session, EscalationPolicy, tenant_id, data.name, None, "policy")
    existing = await _policies_of(session, tenant_id)
    if data.is_default is False and not existing:
        raise InvalidInput("a tenant's first policy is its default", field="body.is_default")
    policy = EscalationPolicy(
        tenant_id=tenant_id,
        name=data.name,
        steps=await _steps_json(session, tenant_id, data.steps),
        repeat=data.repeat,
        repeat_interval_minutes=data.repeat_interval_minutes,
        is_default=not existing,
    )
    session.add(policy)
    await session.flush()
    if data.is_default:
        await _make_default(session, policy)
    await session.flush()
    await session.refresh(policy)
    return policy


async def get_policy(session: AsyncSession, policy_id: uuid.UUID) -> EscalationPolicy:
    return await get_by_id(session, EscalationPolicy, policy_id, "escalation policy")


async def list_policies(
    session: AsyncSession, tenant_id: uuid.UUID | None = None
) -> list[EscalationPolicy]:
    return await list_owned(session, EscalationPolicy, tenant_id)


async def update_policy(
    session: AsyncSession, policy: EscalationPolicy, data: PolicyUpdate
) -> EscalationPolicy:
    values = data.model_dump(exclude_unset=True)
    if values.get("name") is not None:
        await unique_name(
            session, EscalationPolicy, policy.tenant_id, values["name"], policy.id, "policy"
        )
        policy.name = values["name"]
    if data.steps is not None:
        policy.steps = await _steps_json(session, policy.tenant_id, data.steps)
    if values.get("repeat") is not None:
        policy.repeat = values["repeat"]
    if "repeat_interval_minutes" in values:
        policy.repeat_interval_minutes = values["repeat_interval_minutes"]
    if values.get("is_default") is True:
        await _make_default(session, policy)
    elif values.get("is_default") is False and policy.is_default:
        raise InvalidInput("make another policy the default instead", field="body.is_default")
    policy.updated_at = utcnow()
    await session.flush()
    await session.refresh(policy)
    return policy


async def delete_policy(session: AsyncSession, policy: EscalationPolicy) -> None:
    """Workspaces and servers that named it fall back; the oldest other one becomes the
    default if this was it."""
    was_default, tenant_id = policy.is_default, policy.tenant_id
    await session.delete(policy)
    await session.flush()
    if was_default:
        rest = await _policies_of(session, tenant_id)
        if rest:
            rest[0].is_default = True
            await session.flush()


async def assignable(
    session: AsyncSession, tenant_id: uuid.UUID, policy_id: uuid.UUID | None, field: str
) -> uuid.UUID | None:
    """``policy_id`` if a workspace or server of ``tenant_id`` may name it."""
    if policy_id is None:
        return None
    owner = await session.scalar(
        select(EscalationPolicy.tenant_id).where(EscalationPolicy.id == policy_id)
    )
    if owner != tenant_id:
        raise InvalidInput(f"no escalation policy {policy_id} of this tenant", field=field)
    return policy_id
