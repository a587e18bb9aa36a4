"""Reconnect backoff as gRPC specifies (doc/connection-backoff.md): 1 s, ×1.6, ±20 %, cap 120 s."""

from __future__ import annotations

import random


class Backoff:
    def __init__(
        self,
        initial: float = 1.0,
        multiplier: float = 1.6,
        jitter: float = 0.2,
        maximum: float = 120.0,
        rng: random.Random | None = None,
    ) -> None:
        self.initial, self.multiplier, self.jitter, self.maximum = (
            initial,
            multiplier,
            jitter,
            maximum,
        )
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._current = initial

    def next(self) -> float:
        """The next delay: the current backoff with jitter, then grow it for the time after."""
        delay = self._current * (1 + self._rng.uniform(-self.jitter, self.jitter))
        self._current = min(self._current * self.multiplier, self.maximum)
        return delay

    def reset(self) -> None:
        self._current = self.initial
