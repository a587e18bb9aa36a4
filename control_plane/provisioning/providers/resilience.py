"""Client-side manners for provider APIs: a rate limiter, backoff with jitter, a circuit breaker.

Provider-neutral on purpose: every HTTP driver needs the same three things, and the
provider-specific part is only deciding which failures count.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import Literal

from control_plane.provisioning.providers.base import ProviderUnavailable

log = logging.getLogger(__name__)

Clock = Callable[[], float]
BreakerState = Literal["closed", "open", "half_open"]
_JITTER = random.Random()  # noqa: S311 - spreads retries in time, nothing secret


class TokenBucket:
    """At most ``rate`` requests per second on average, with bursts of up to ``capacity``.

    The default capacity of one spaces requests evenly (1/rate apart), which also stays under
    a provider that counts requests per sliding second. Waiters are served in arrival order
    (``asyncio.Lock`` is fair), so one busy workflow cannot starve another.
    """

    def __init__(self, rate: float, capacity: float = 1.0, clock: Clock = time.monotonic) -> None:
        if rate <= 0 or capacity < 1:
            raise ValueError("rate must be > 0 and capacity >= 1")
        self.rate = rate
        self.capacity = capacity
        self._clock = clock
        self._tokens = capacity
        self._updated = clock()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = self._clock()
                self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
                self._updated = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                await asyncio.sleep((1 - self._tokens) / self.rate)


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Delay before retry number ``attempt`` (1-based): exponential, capped, "equal jitter".

    Half the delay is fixed so retries really back off; the other half is random so many
    clients failing together do not retry in lockstep.
    """
    ceiling = min(cap, base * 2.0 ** (attempt - 1))
    return ceiling / 2 + (rng or _JITTER).uniform(0, ceiling / 2)


class CircuitBreaker:
    """Fail fast after ``failure_threshold`` consecutive failures, for ``cooldown`` seconds.

    Closed: calls pass. Open: calls raise ``ProviderUnavailable`` without touching the
    network. After the cool-down one probe call passes (half-open); its success closes the
    circuit, its failure opens it for another cool-down. Every call that ``allow`` lets
    through must end in ``success``, ``failure`` or ``release`` (cancelled, says nothing).
    """

    def __init__(
        self,
        name: str,
        failure_threshold: int = 5,
        cooldown: float = 30.0,
        clock: Clock = time.monotonic,
    ) -> None:
        if failure_threshold < 1 or cooldown < 0:
            raise ValueError("failure_threshold must be >= 1 and cooldown >= 0")
        self.name = name
        self.failure_threshold = failure_threshold
        self.cooldown = cooldown
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.cooldown:
            return "half_open"
        return "open"

    def allow(self) -> None:
        """Raise ``ProviderUnavailable`` unless a call may go out now."""
        state = self.state
        if state == "closed":
            return
        if state == "half_open" and not self._probing:
            self._probing = True
            log.info("%s circuit half-open: sending one probe request", self.name)
            return
        assert self._opened_at is not None
        remaining = max(0.0, self.cooldown - (self._clock() - self._opened_at))
        raise ProviderUnavailable(
            f"{self.name} circuit is open after {self._failures} consecutive failures; "
            f"next attempt in {remaining:.1f}s"
        )

    def success(self) -> None:
        if self._opened_at is not None:
            log.info("%s circuit closed: the provider answers again", self.name)
        self._failures = 0
        self._opened_at = None
        self._probing = False

    def failure(self) -> None:
        self._failures += 1
        if self._probing or self._failures >= self.failure_threshold:
            if self._opened_at is None or self._probing:
                log.warning(
                    "%s circuit open after %d consecutive failures; failing fast for %.1fs",
                    self.name,
                    self._failures,
                    self.cooldown,
                )
            self._opened_at = self._clock()
        self._probing = False

    def release(self) -> None:
        self._probing = False
