"""The price catalog: what each thing cost from when to when.

A price is never edited: a new amount closes the current entry (``effective_to``) and opens
the next from its date, so rating any past day uses the price of that day.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.costs.models import Price
from control_plane.errors import InvalidInput

KINDS = ("plan", "ip", "backup_storage", "bandwidth")
ANY_PROVIDER = "*"


@dataclass(frozen=True)
class PricePeriod:
    """One catalog entry as rating reads it."""

    amount: Decimal
    currency: str
    included_gb: int | None
    start: datetime
    end: datetime | None  # exclusive; None: still current


async def set_price(
    session: AsyncSession,
    *,
    provider: str,
    kind: str,
    item: str,
    amount: Decimal,
    currency: str,
    effective_from: datetime,
    source: str,
    included_gb: int | None = None,
) -> Price | None:
    """``amount`` from ``effective_from`` on: the entry current then is closed at that
    instant and later ones (a price set ahead) are left alone. Setting what is already the
    price changes nothing (None)."""
    if kind not in KINDS:
        raise InvalidInput(f"kind must be one of {', '.join(KINDS)}", field="body.kind")
    if amount < 0 or not amount.is_finite():
        raise InvalidInput("a price is zero or more", field="body.amount")
    current = await session.scalar(
        select(Price)
        .where(
            Price.provider == provider,
            Price.kind == kind,
            Price.item == item,
            Price.effective_from <= effective_from,
            or_(Price.effective_to.is_(None), Price.effective_to > effective_from),
        )
        .order_by(Price.effective_from.desc())
        .limit(1)
    )
    if (
        current is not None
        and current.amount == amount
        and current.currency == currency
        and current.included_gb == included_gb
    ):
        return None
    following = await session.scalar(
        select(Price.effective_from)
        .where(
            Price.provider == provider,
            Price.kind == kind,
            Price.item == item,
            Price.effective_from > effective_from,
        )
        .order_by(Price.effective_from)
        .limit(1)
    )
    if current is not None:
        if current.effective_from == effective_from:
            raise InvalidInput(
                "a price already starts at that instant", field="body.effective_from"
            )
        current.effective_to = effective_from
    price = Price(
        provider=provider,
        kind=kind,
        item=item,
        amount=amount,
        currency=currency,
        included_gb=included_gb,
        effective_from=effective_from,
        effective_to=following,
        source=source,
    )
    session.add(price)
    await session.flush()
    return price


PriceBook = dict[tuple[str, str, str], list[PricePeriod]]


async def price_book(session: AsyncSession, start: datetime, end: datetime) -> PriceBook:
    """Every price in force at some moment of [start, end), by (provider, kind, item),
    oldest first: rating looks prices up here instead of querying per line."""
    rows = await session.scalars(
        select(Price)
        .where(
            Price.effective_from < end,
            or_(Price.effective_to.is_(None), Price.effective_to > start),
        )
        .order_by(Price.effective_from)
    )
    book: PriceBook = defaultdict(list)
    for row in rows:
        book[(row.provider, row.kind, row.item)].append(
            PricePeriod(
                row.amount, row.currency, row.included_gb, row.effective_from, row.effective_to
            )
        )
    return dict(book)


def periods(book: PriceBook, provider: str, kind: str, item: str) -> list[PricePeriod]:
    """The provider's own prices for the item, else those for every provider (``*``)."""
    return book.get((provider, kind, item)) or book.get((ANY_PROVIDER, kind, item)) or []
