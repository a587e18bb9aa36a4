"""The price catalog (admins set prices; everyone reads them)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status
from pydantic import AwareDatetime

from control_plane.api.context import AdminCtx, Ctx
from control_plane.costs import catalog, prices
from control_plane.costs.price_schemas import (
    PriceIn,
    PriceKind,
    PriceOut,
    PricesOut,
    ProviderFailure,
    RefreshOut,
)
from control_plane.db.base import utcnow

router = APIRouter(prefix="/api/v1/prices", tags=["costs"])


@router.get("")
async def list_prices(
    ctx: Ctx,
    at: Annotated[AwareDatetime | None, Query(description="The catalog at this instant.")] = None,
    history: Annotated[bool, Query(description="Every entry, past and ahead.")] = False,
    provider: Annotated[str | None, Query(max_length=32)] = None,
    kind: PriceKind | None = None,
) -> PricesOut:
    """The prices in force now (or ``at``), or with ``history`` every entry."""
    when = None if history else (at or utcnow())
    async with ctx.session() as session:
        rows = await prices.list_prices(session, at=when, provider=provider, kind=kind)
        return PricesOut(at=when, items=[PriceOut.model_validate(row) for row in rows])


@router.post("", status_code=status.HTTP_201_CREATED)
async def set_price(body: PriceIn, ctx: AdminCtx, response: Response) -> PriceOut:
    """A price from ``effective_from`` on: the entry in force then ends at that instant.
    The price already in force answers 200 with that entry and adds nothing."""
    at = body.effective_from or utcnow()
    async with ctx.session() as session:
        price = await prices.set_price(
            session,
            provider=body.provider,
            kind=body.kind,
            item=body.item,
            amount=body.amount,
            currency=body.currency,
            effective_from=at,
            source="admin",
            included_gb=body.included_gb,
        )
        if price is None:
            price = await prices.price_at(session, body.provider, body.kind, body.item, at)
            response.status_code = status.HTTP_200_OK
        return PriceOut.model_validate(price)


@router.post("/refresh")
async def refresh_prices(ctx: AdminCtx) -> RefreshOut:
    """Read every provider's price list and the price settings now (else done daily)."""
    fetched = await catalog.fetch_plans(ctx.providers)
    async with ctx.session() as session:
        done = await catalog.record(session, ctx.settings, fetched)
    return RefreshOut(
        at=done.at,
        recorded=done.recorded,
        providers=list(done.providers),
        failed=[ProviderFailure(provider=p, error=e) for p, e in sorted(done.failed.items())],
    )
