"""Addresses no other test of the session holds: the live-address index is global."""

from __future__ import annotations

import ipaddress
import itertools
import random

# 198.19.0.0/16 (benchmarking space, never routed): rows only, nothing is sent to them.
_NEXT = itertools.count(random.randrange(1, 60_000))
_BASE = int(ipaddress.IPv4Address("198.19.0.0"))


def fresh_addresses(count: int) -> list[str]:
    return [str(ipaddress.IPv4Address(_BASE + next(_NEXT) % 65_534 + 1)) for _ in range(count)]
