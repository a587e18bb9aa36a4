"""Request and response shapes of the price catalog (money as a decimal string with its
currency)."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import AwareDatetime, ConfigDict, Field, field_validator

from control_plane.schemas import RequestModel, ResponseModel

PriceKind = Literal["plan", "ip", "backup_storage", "bandwidth"]


class PriceIn(RequestModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"provider": "*", "kind": "ip", "item": "", "amount": "4.99", "currency": "USD"}
            ]
        },
    )

    provider: str = Field(
        min_length=1, max_length=32, pattern=r"^[a-z0-9*][a-z0-9_-]*$",
        description="A provider (hostwinds, local…) or * for every provider without its own.",
    )  # fmt: skip
    kind: PriceKind = Field(
        description="plan (a month), ip (an extra address-month), backup_storage (a "
        "GB-month), bandwidth (a GB beyond the plan's allowance)."
    )
    item: str = Field(
        default="", max_length=64, pattern=r"^[^\x00-\x1f\x7f]*$",
        description="The plan id, or the repository kind for backup_storage; else empty.",
    )  # fmt: skip
    amount: Decimal = Field(ge=0, max_digits=16, decimal_places=6, description='E.g. "4.99".')
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217, e.g. USD.")
    effective_from: AwareDatetime | None = Field(
        default=None, description="When the price applies from (default: now); may be ahead."
    )
    included_gb: int | None = Field(
        default=None, ge=0, le=10_000_000, description="A plan's monthly bandwidth allowance."
    )


class PriceOut(ResponseModel):
    id: uuid.UUID
    provider: str
    kind: PriceKind
    item: str
    amount: Decimal
    currency: str
    included_gb: int | None
    effective_from: datetime
    effective_to: datetime | None = Field(description="Exclusive; null: still in force.")
    source: Literal["provider", "setting", "admin"]
    created_at: datetime

    @field_validator("amount")
    @classmethod
    def _as_set(cls, value: Decimal) -> Decimal:
        """The same on both databases: PostgreSQL answers at the column's scale
        (20.000000); show 20.00, and a rate as 0.0059."""
        cents = value.quantize(Decimal("0.01"))
        return cents if cents == value else value.normalize()


class PricesOut(ResponseModel):
    at: datetime | None = Field(description="The instant shown; null with history=true.")
    items: list[PriceOut]


class ProviderFailure(ResponseModel):
    provider: str
    error: str


class RefreshOut(ResponseModel):
    at: datetime
    recorded: int = Field(description="New catalog entries (unchanged prices add none).")
    providers: list[str] = Field(description="Providers whose price lists were read.")
    failed: list[ProviderFailure] = Field(description="Providers whose prices were kept.")
