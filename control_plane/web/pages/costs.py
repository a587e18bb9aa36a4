"""Costs: each workspace's month to date and its projection to month end, the tenant's
totals and idle part, budgets with their state (made and changed here), and each
workspace's monthly statement.

The same services as the API: ``GET /api/v1/costs`` (costs.report.cost_report), the
budgets' figures (report.month_figures, budgets.status_of), ``POST /api/v1/budgets`` and
``PATCH /api/v1/budgets/{id}`` (budgets.create_budget/update_budget, audited as those
routes), ``GET /api/v1/workspaces/{id}/statement`` (costs.statements)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.status import HTTP_303_SEE_OTHER

from control_plane.costs import budgets, export, statements
from control_plane.costs.budget_schemas import (
    DEFAULT_THRESHOLDS,
    BudgetCreate,
    BudgetStatusOut,
    BudgetUpdate,
)
from control_plane.costs.engine import day_start, month_of, month_start, next_month
from control_plane.costs.models import Budget
from control_plane.costs.report import (
    MonthBook,
    MonthFigures,
    cost_report,
    report_and_book,
)
from control_plane.db.base import utcnow
from control_plane.errors import MailFleetError
from control_plane.web.console import (
    Console,
    PageError,
    SignedIn,
    acting_as,
    not_found,
    render,
    require_csrf,
)
from control_plane.web.pages import NavLink
from control_plane.workspaces.models import Workspace
from control_plane.workspaces.service import get_workspace, list_workspaces

router = APIRouter(include_in_schema=False)
NAV = (NavLink("Costs", "/ui/costs", 40),)
PAGE_SIZE = 50
LISTED = 500  # workspaces named in the budget form, budgets shown
LABELS = {"workspace_id": "Budget for", "name": "Name", "amount": "Amount",
          "currency": "Currency", "thresholds": "Alert at (%)"}  # fmt: skip
Month = Annotated[str | None, Query(max_length=7)]
CsrfToken = Annotated[str | None, Form()]
Text = Annotated[str, Form(max_length=300)]


def _month(month: str | None, now: datetime) -> date:
    try:
        return month_of(month, now.date())
    except ValueError:
        raise PageError(422, "Unknown month", "month: a month like 2026-11.") from None


@dataclass(frozen=True)
class WorkspaceRow:
    workspace: Workspace
    billed: list[str]  # this month so far with the workspace's markup, per currency
    figures: list[MonthFigures]  # cost so far and projected to month end, per currency


@dataclass(frozen=True)
class BudgetRow:
    budget: Budget
    scope: str  # "Whole tenant" or the workspace's name
    status: BudgetStatusOut


@dataclass
class BudgetForm:
    """What the form shows: the values typed (kept on a refusal) and the refusal."""

    values: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    field: str | None = None


def _refusal(form: BudgetForm, where: str, message: str) -> BudgetForm:
    """The form again naming the field (``body.amount``, ``amount``, ``thresholds.0``)."""
    name = where.removeprefix("body.").split(".")[0]
    label = LABELS.get(name)
    return BudgetForm(form.values, f"{label}: {message}" if label else message, name)


def _validation(form: BudgetForm, exc: ValidationError) -> BudgetForm:
    first = exc.errors()[0]
    return _refusal(form, ".".join(str(p) for p in first["loc"]), first["msg"])


async def _budget_rows(
    session: AsyncSession,
    tenant_id: uuid.UUID | None,
    names: dict[uuid.UUID, str],
    book: MonthBook,
) -> list[BudgetRow]:
    now = utcnow()
    found = (await budgets.list_budgets(session, tenant_id, None, None, LISTED)).items
    return [
        BudgetRow(
            b,
            "Whole tenant" if b.workspace_id is None else names.get(b.workspace_id, "workspace"),
            await budgets.status_of(session, b, now, book),
        )
        for b in found
    ]


async def _costs_data(console: Console, month: date, after: uuid.UUID | None) -> dict[str, Any]:
    now, tenant_id = utcnow(), console.tenant_id
    async with console.ctx.session() as session:
        report, book = await report_and_book(
            session, day_start(month), day_start(next_month(month)), now, tenant_id, None
        )
        assert book is not None  # the report has every workspace: it comes with the book
        page = await list_workspaces(session, tenant_id, after, PAGE_SIZE)
        rows = [
            WorkspaceRow(
                w,
                [f"{g.billed:.2f} {g.currency}" for g in report.groups if g.key == str(w.id)],
                book.of(w.id),
            )
            for w in page.items
        ]
        every = (await list_workspaces(session, tenant_id, None, LISTED)).items
        budget_rows = await _budget_rows(session, tenant_id, {w.id: w.name for w in every}, book)
    return {
        "month": month, "report": report, "rows": rows, "next_after": page.next_after,
        "workspaces": every, "budgets": budget_rows, "this_month": month_start(now.date()),
    }  # fmt: skip


def _blank_form(console: Console) -> BudgetForm:
    return BudgetForm(
        {
            "currency": console.ctx.settings.cost_currency,
            "thresholds": ",".join(str(t) for t in DEFAULT_THRESHOLDS),
        }
    )


async def _costs_page(
    request: Request,
    console: Console,
    month: date,
    after: uuid.UUID | None = None,
    form: BudgetForm | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    data = await _costs_data(console, month, after)
    return render(
        request, "costs.html", status_code, console=console, form=form or _blank_form(console),
        labels=LABELS, **data,
    )  # fmt: skip


@router.get("/ui/costs")
async def costs(
    request: Request, console: SignedIn, month: Month = None, after: uuid.UUID | None = None
) -> HTMLResponse:
    """The month (default: this one, to now) per workspace, with budgets."""
    return await _costs_page(request, console, _month(month, utcnow()), after)


@router.get("/ui/costs/export.csv")
async def costs_export(console: SignedIn, month: Month = None) -> StreamingResponse:
    """The month by workspace as the API's CSV (``GET /api/v1/costs?format=csv``)."""
    now = utcnow()
    first = _month(month, now)
    async with console.ctx.session() as session:
        report = await cost_report(
            session, day_start(first), day_start(next_month(first)), now, console.tenant_id, None
        )
    return StreamingResponse(
        export.chunks(report),
        media_type=export.MEDIA_TYPE,
        headers={"Content-Disposition": f'attachment; filename="{export.filename(report)}"'},
    )


def _model_input(values: dict[str, str]) -> dict[str, Any]:
    """The form's text as the API's JSON body would carry it (blank workspace: the tenant;
    thresholds comma separated)."""
    out: dict[str, Any] = {k: v.strip() for k, v in values.items() if k != "name"}
    out["thresholds"] = [t.strip() for t in values["thresholds"].split(",") if t.strip()]
    if "name" in values:
        out["name"] = values["name"]
    if "workspace_id" in values:
        out["workspace_id"] = out["workspace_id"] or None
    return out


@router.post("/ui/costs/budgets")
async def create_budget(
    request: Request,
    console: SignedIn,
    csrf_token: CsrfToken = None,
    workspace_id: Text = "",
    name: Text = "",
    amount: Text = "",
    currency: Text = "",
    thresholds: Text = "",
) -> Response:
    """A budget for a workspace or the whole tenant, as ``POST /api/v1/budgets`` makes it;
    a refusal shows the form again naming the field."""
    require_csrf(request, csrf_token, console.csrf)
    form = BudgetForm(
        dict(workspace_id=workspace_id, name=name, amount=amount, currency=currency,
             thresholds=thresholds)
    )  # fmt: skip
    this_month = _month(None, utcnow())
    try:
        data = BudgetCreate.model_validate(_model_input(form.values))
    except ValidationError as exc:
        refused = _validation(form, exc)
        return await _costs_page(request, console, this_month, None, refused, 422)
    ctx = acting_as(request, console, "POST", "/api/v1/budgets", 201)
    try:
        tenant_id = ctx.owning_tenant(console.tenant_id, "body.tenant_id")
        async with ctx.session() as session:
            await budgets.create_budget(session, tenant_id, data)
    except MailFleetError as exc:
        refused = _refusal(form, exc.field or "", exc.detail)
        if console.is_admin and console.tenant_id is None:
            refused.error = "Switch to a tenant first: a budget belongs to one."
        return await _costs_page(request, console, this_month, None, refused, exc.status)
    return RedirectResponse("/ui/costs#budgets", status_code=HTTP_303_SEE_OTHER)


async def _budget(console: Console, budget_id: uuid.UUID) -> tuple[Budget, list[Workspace]]:
    try:
        async with console.ctx.session() as session:
            budget = await budgets.get_budget(session, budget_id)
            found = (
                [await get_workspace(session, budget.workspace_id)] if budget.workspace_id else []
            )
            return budget, found
    except MailFleetError as exc:
        raise not_found(exc) from None


def _budget_page(
    request: Request,
    console: Console,
    budget: Budget,
    scope: list[Workspace],
    form: BudgetForm | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    form = form or BudgetForm(
        {
            "name": budget.name,
            "amount": f"{budget.amount:.2f}",
            "currency": budget.currency,
            "thresholds": budget.thresholds,
        }
    )
    return render(
        request, "costs_budget.html", status_code, console=console, budget=budget,
        scope=scope[0].name if scope else "Whole tenant", form=form, labels=LABELS,
    )  # fmt: skip


@router.get("/ui/costs/budgets/{budget_id}")
async def budget_page(request: Request, console: SignedIn, budget_id: uuid.UUID) -> HTMLResponse:
    """One budget's form, to change its amount, currency, thresholds or name."""
    budget, scope = await _budget(console, budget_id)
    return _budget_page(request, console, budget, scope)


@router.post("/ui/costs/budgets/{budget_id}")
async def update_budget(
    request: Request,
    console: SignedIn,
    budget_id: uuid.UUID,
    csrf_token: CsrfToken = None,
    name: Text = "",
    amount: Text = "",
    currency: Text = "",
    thresholds: Text = "",
) -> Response:
    """As ``PATCH /api/v1/budgets/{id}``: the new figures apply from the next check."""
    require_csrf(request, csrf_token, console.csrf)
    budget, scope = await _budget(console, budget_id)
    form = BudgetForm(dict(name=name, amount=amount, currency=currency, thresholds=thresholds))
    try:
        data = BudgetUpdate.model_validate(_model_input(form.values))
    except ValidationError as exc:
        return _budget_page(request, console, budget, scope, _validation(form, exc), 422)
    ctx = acting_as(request, console, "PATCH", "/api/v1/budgets/{budget_id}", 200)
    try:
        async with ctx.session() as session:
            await budgets.update_budget(session, budget_id, data)
    except MailFleetError as exc:
        refused = _refusal(form, exc.field or "", exc.detail)
        return _budget_page(request, console, budget, scope, refused, exc.status)
    return RedirectResponse("/ui/costs#budgets", status_code=HTTP_303_SEE_OTHER)


async def _statement(
    console: Console, workspace_id: uuid.UUID, month: str | None
) -> statements.Statement:
    now = utcnow()
    first = _month(month, now)
    try:
        async with console.ctx.session() as session:
            workspace = await get_workspace(session, workspace_id)
            return await statements.statement(
                session, workspace, first, now, console.ctx.settings.cost_currency
            )
    except MailFleetError as exc:
        raise not_found(exc) from None


@router.get("/ui/costs/workspaces/{workspace_id}/statement")
async def statement(
    request: Request, console: SignedIn, workspace_id: uuid.UUID, month: Month = None
) -> HTMLResponse:
    """A workspace's statement for a month: what its client is billed, line by line."""
    found = await _statement(console, workspace_id, month)
    return render(
        request, "costs_statement.html", console=console, s=found, workspace_id=workspace_id,
        month=f"{found.start:%Y-%m}",
    )  # fmt: skip


@router.get("/ui/costs/workspaces/{workspace_id}/statement.csv")
async def statement_csv(
    console: SignedIn, workspace_id: uuid.UUID, month: Month = None
) -> Response:
    """The statement as the API's CSV (``?format=csv``)."""
    found = await _statement(console, workspace_id, month)
    name = f"statement-{workspace_id}-{found.start:%Y-%m}.csv"
    return Response(
        statements.as_csv(found),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
