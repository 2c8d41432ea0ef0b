"""The SLA timer's wake-ups: a nearer clock wakes it, a later one does not, hints settle."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

from services.sla.app import Timer

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


async def slept(timer: Timer, seconds: float, nudge_at: float | None,
                instant: datetime | None) -> float:
    async def nudge() -> None:
        if nudge_at is not None:
            await asyncio.sleep(nudge_at)
            timer.nudge([instant])
    began = time.monotonic()
    await asyncio.gather(timer.sleep(seconds, NOW), nudge())
    return time.monotonic() - began


async def test_a_nearer_clock_wakes_the_sleeping_timer() -> None:
    timer = Timer()
    assert await slept(timer, 5.0, 0.05, NOW + timedelta(seconds=1)) < 1.0
    assert timer.hint(NOW) == NOW + timedelta(seconds=1)


async def test_a_later_clock_neither_wakes_it_nor_is_kept() -> None:
    timer = Timer()
    assert await slept(timer, 0.3, 0.05, NOW + timedelta(hours=1)) >= 0.25
    assert timer.hint(NOW) is None


async def test_a_passed_hint_is_rechecked_until_it_settles() -> None:
    timer = Timer()
    timer.nudge([None, NOW - timedelta(seconds=1)])
    assert timer.hint(NOW) == NOW - timedelta(seconds=1)  # its transaction may not be visible yet
    timer.SETTLE = 0.0
    assert timer.hint(NOW) is None
