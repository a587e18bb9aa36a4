"""Waiting for a wake-up with a time limit, in loops that are stopped by cancellation.

``asyncio.wait_for(event.wait(), t)`` on Python 3.11 returns normally when the task is
cancelled at the moment the event is set (the inner wait is done, so its result wins): the
cancellation is lost and the loop runs on, and whoever awaits the cancelled task waits
forever (seen as a hung test: a runner stopped just as a step finished and woke it).
``asyncio.timeout`` keeps the two apart.
"""

from __future__ import annotations

import asyncio


async def woken(event: asyncio.Event, seconds: float) -> bool:
    """True once ``event`` is set, False after ``seconds``; a cancellation always
    propagates."""
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return False
    return True
