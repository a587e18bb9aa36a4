"""woken: a wake-up or a time limit, and a cancellation is never lost to the wake-up."""

from __future__ import annotations

import asyncio

import pytest

from control_plane.waiting import woken


async def test_woken_by_the_event_or_the_time_limit() -> None:
    event = asyncio.Event()
    assert await woken(event, 0.01) is False
    event.set()
    assert await woken(event, 5) is True


async def test_a_cancellation_as_the_event_is_set_propagates() -> None:
    """asyncio.wait_for on Python 3.11 returned normally here, so a loop stopped this way
    ran on and whoever awaited it hung."""
    event = asyncio.Event()
    task = asyncio.create_task(woken(event, 5))
    await asyncio.sleep(0)  # the task is waiting
    event.set()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
