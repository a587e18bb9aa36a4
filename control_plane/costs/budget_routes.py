"""Monthly budgets per workspace or tenant, alerted at thresholds."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, status

from control_plane.api.context import Ctx
from control_plane.costs import budgets
from control_plane.costs.budget_schemas import (
    BudgetCreate,
    BudgetOut,
    BudgetStatusOut,
    BudgetUpdate,
)
from control_plane.db.base import utcnow
from control_plane.schemas import After, Limit, PageOut

router = APIRouter(prefix="/api/v1/budgets", tags=["costs"])


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_budget(body: BudgetCreate, ctx: Ctx) -> BudgetOut:
    """One budget per workspace, and one for the whole tenant (``workspace_id`` null): a
    second is 409."""
    tenant_id = ctx.owning_tenant(body.tenant_id)
    async with ctx.session() as session:
        return BudgetOut.model_validate(await budgets.create_budget(session, tenant_id, body))


@router.get("")
async def list_budgets(
    ctx: Ctx,
    tenant_id: uuid.UUID | None = None,
    workspace_id: uuid.UUID | None = None,
    after: After = None,
    limit: Limit = 100,
) -> PageOut[BudgetOut]:
    async with ctx.session() as session:
        page = await budgets.list_budgets(session, tenant_id, workspace_id, after, limit)
        items = [BudgetOut.model_validate(b) for b in page.items]
        return PageOut(items=items, next_after=page.next_after)


@router.get("/{budget_id}")
async def get_budget(budget_id: uuid.UUID, ctx: Ctx) -> BudgetOut:
    async with ctx.session() as session:
        return BudgetOut.model_validate(await budgets.get_budget(session, budget_id))


@router.get("/{budget_id}/status")
async def budget_status(budget_id: uuid.UUID, ctx: Ctx) -> BudgetStatusOut:
    """This month's cost and projection against the budget, and the thresholds crossed."""
    async with ctx.session() as session:
        budget = await budgets.get_budget(session, budget_id)
        return await budgets.status_of(session, budget, utcnow())


@router.patch("/{budget_id}")
async def update_budget(budget_id: uuid.UUID, body: BudgetUpdate, ctx: Ctx) -> BudgetOut:
    async with ctx.session() as session:
        budget = await budgets.update_budget(session, budget_id, body)
        return BudgetOut.model_validate(budget)


@router.delete("/{budget_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_budget(budget_id: uuid.UUID, ctx: Ctx) -> None:
    async with ctx.session() as session:
        await budgets.delete_budget(session, budget_id)
