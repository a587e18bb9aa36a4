"""Splitting a shared server's cost among workspaces, and rounding to cents without losing
or making a cent: amounts split exactly (the last share takes the remainder), rounded
only in reports, by largest remainder so the rounded parts add up to the rounded whole."""

from __future__ import annotations

import uuid
from collections.abc import Hashable, Mapping, Sequence
from datetime import date
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import TypeVar

CENT = Decimal("0.01")
SPLITS = ("mailboxes", "storage", "even")
# The reading that weighs each way of splitting (``even``: share_domains > 0 counts 1).
SPLIT_READING = {
    "share_mailboxes": "mailboxes",
    "share_storage": "storage",
    "share_domains": "even",
}

Weights = list[tuple[uuid.UUID | None, int]]
# (server, day, split) → each workspace's weight (None: domains of no workspace).
Shares = dict[tuple[uuid.UUID, date, str], Weights]
K = TypeVar("K", bound=Hashable)


def add_shares(
    shares: Shares,
    server_id: uuid.UUID,
    resource: str,
    item: str,
    days: Sequence[date],
    quantities: Sequence[int],
) -> None:
    """A server's share readings of one kind and workspace (day by day) into ``shares``."""
    how = SPLIT_READING[resource]
    workspace = uuid.UUID(item) if item else None
    for day, quantity in zip(days, quantities, strict=True):
        weight = (1 if quantity > 0 else 0) if how == "even" else max(0, quantity)
        shares.setdefault((server_id, day, how), []).append((workspace, weight))


def split(
    amount: Decimal, quantity: Decimal, weights: Weights | None
) -> list[tuple[uuid.UUID | None, Decimal, Decimal]]:
    """``amount`` (and the quantity) by weight; no weights at all: unallocated (None)."""
    total = sum(w for _, w in weights) if weights else 0
    if not weights or total <= 0:
        return [(None, amount, quantity)]
    parts: list[tuple[uuid.UUID | None, Decimal, Decimal]] = []
    left, left_q = amount, quantity
    live = [(ws, w) for ws, w in weights if w > 0]
    for n, (workspace, weight) in enumerate(live):
        if n == len(live) - 1:
            parts.append((workspace, left, left_q))
            break
        share, share_q = amount * weight / total, quantity * weight / total
        left, left_q = left - share, left_q - share_q
        parts.append((workspace, share, share_q))
    return parts


def cents(amount: Decimal) -> Decimal:
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def round_parts(parts: Mapping[K, Decimal]) -> dict[K, Decimal]:
    """Each part to cents so that they add up to the whole rounded (largest remainder):
    every part rounded down, then a cent more to those that lost the most."""
    whole = cents(sum(parts.values(), Decimal(0)))
    rounded = {k: v.quantize(CENT, rounding=ROUND_FLOOR) for k, v in parts.items()}
    left = int((whole - sum(rounded.values(), Decimal(0))) / CENT)
    for k in sorted(parts, key=lambda k: parts[k] - rounded[k], reverse=True)[:left]:
        rounded[k] += CENT
    return rounded
