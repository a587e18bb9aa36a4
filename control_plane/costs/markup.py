"""What an agency bills its client: cost plus the workspace's markup."""

from __future__ import annotations

from decimal import Decimal


def billed(
    cost: Decimal, percent: Decimal | None, fixed: Decimal | None, month_fraction: Decimal
) -> Decimal:
    """``cost × (1 + percent/100) + fixed × month_fraction`` (unrounded): the fixed part is
    a monthly fee, so a report over part of a month carries that part of it."""
    amount = cost
    if percent is not None:
        amount += cost * percent / Decimal(100)
    if fixed is not None:
        amount += fixed * month_fraction
    return amount
