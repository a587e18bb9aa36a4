"""The price catalog: what each thing cost from when to when.

A price is never edited: a new amount closes the current entry (``effective_to``) and opens
the next from its date, so rating any past day uses the price of that day.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.costs.models import Price
from control_plane.db import locks
from control_plane.errors import Conflict, InvalidInput

KINDS = ("plan", "ip", "backup_storage", "bandwidth")
SOURCES = ("provider", "setting", "admin")
ANY_PROVIDER = "*"
_CURRENCY = re.compile(r"^[A-Z]{3}$")


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
    price changes nothing (None); another price starting at that very instant is a
    Conflict."""
    if kind not in KINDS:
        raise InvalidInput(f"kind must be one of {', '.join(KINDS)}", field="body.kind")
    if not amount.is_finite() or amount < 0:
        raise InvalidInput("a price is zero or more", field="body.amount")
    if not _CURRENCY.match(currency):
        raise InvalidInput("a currency is 3 capital letters (ISO 4217)", field="body.currency")
    await locks.hold(session, f"price:{provider}:{kind}:{item}")  # two refreshes at once
    current = await price_at(session, provider, kind, item, effective_from)
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
            raise Conflict("a price already starts at that instant", field="body.effective_from")
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


async def price_at(
    session: AsyncSession, provider: str, kind: str, item: str, at: datetime
) -> Price | None:
    """The entry in force at ``at`` (the provider's own, not the ``*`` fallback)."""
    return await session.scalar(
        select(Price)
        .where(
            Price.provider == provider,
            Price.kind == kind,
            Price.item == item,
            Price.effective_from <= at,
            or_(Price.effective_to.is_(None), Price.effective_to > at),
        )
        .order_by(Price.effective_from.desc())
        .limit(1)
    )


async def list_prices(
    session: AsyncSession,
    *,
    at: datetime | None,
    provider: str | None = None,
    kind: str | None = None,
) -> Sequence[Price]:
    """The catalog in force at ``at``, or (``at`` None) every entry ever, oldest first."""
    stmt = select(Price).order_by(Price.provider, Price.kind, Price.item, Price.effective_from)
    if at is not None:
        stmt = stmt.where(
            Price.effective_from <= at,
            or_(Price.effective_to.is_(None), Price.effective_to > at),
        )
    if provider is not None:
        stmt = stmt.where(Price.provider == provider)
    if kind is not None:
        stmt = stmt.where(Price.kind == kind)
    return (await session.scalars(stmt)).all()


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
