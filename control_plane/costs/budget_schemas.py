"""Budgets as the API takes and shows them."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, field_validator

from control_plane.schemas import RequestModel, ResponseModel

DEFAULT_THRESHOLDS = (80, 100, 120)

Amount = Annotated[
    Decimal,
    Field(gt=0, max_digits=12, decimal_places=2, description="A month's amount, e.g. 500.00."),
]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217, e.g. USD.")]
Thresholds = Annotated[
    list[Annotated[int, Field(ge=1, le=1000)]],
    Field(
        min_length=1,
        max_length=10,
        description="Percentages of the amount (1-1000) at which actual and forecast cost "
        "alert, once each a month.",
    ),
]
BudgetName = Annotated[str, Field(max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$")]


def _distinct(values: list[int] | None) -> list[int] | None:
    if values is not None and len(set(values)) != len(values):
        raise ValueError("each threshold once")
    return None if values is None else sorted(values)


class BudgetCreate(RequestModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"amount": "500.00", "currency": "USD"}]}
    )

    workspace_id: uuid.UUID | None = Field(
        default=None, description="The workspace budgeted; null: the whole tenant."
    )
    tenant_id: uuid.UUID | None = Field(
        default=None, description="Required with an admin key; a tenant key uses its own tenant."
    )
    name: BudgetName = ""
    amount: Amount
    currency: Currency
    thresholds: Thresholds = Field(default_factory=lambda: list(DEFAULT_THRESHOLDS))

    _thresholds = field_validator("thresholds")(_distinct)


class BudgetUpdate(RequestModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"amount": "750.00"}]})

    name: BudgetName | None = None
    amount: Amount | None = None
    currency: Currency | None = None
    thresholds: Thresholds | None = None

    _thresholds = field_validator("thresholds")(_distinct)


class BudgetOut(ResponseModel):
    id: uuid.UUID
    tenant_id: uuid.UUID
    workspace_id: uuid.UUID | None
    name: str
    amount: Decimal
    currency: str
    thresholds: list[int]
    created_at: datetime
    updated_at: datetime

    @field_validator("thresholds", mode="before")
    @classmethod
    def _stored(cls, value: object) -> object:
        """Stored as ``80,100,120``."""
        return [int(v) for v in value.split(",")] if isinstance(value, str) else value


class BudgetStatusOut(ResponseModel):
    """This month against the budget. ``state`` ``unknown``: no cost figures in the
    budget's currency (none yet, or only other currencies) — never read as under budget."""

    budget_id: uuid.UUID
    month: date
    currency: str
    amount: Decimal
    actual: Decimal | None
    projected: Decimal | None
    actual_percent: Decimal | None
    projected_percent: Decimal | None
    state: Literal["under", "crossed", "unknown"]
    crossed: list[str] = Field(
        description="Thresholds crossed this month, e.g. actual.80, forecast.100."
    )
