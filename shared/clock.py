"""Injectable time. Cores take `now` as an argument; runtimes get it from a Clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    """Wall-clock time, optionally running faster than real time from a fixed origin (demo)."""

    def __init__(self, speed: float = 1.0) -> None:
        self._speed = speed
        self._origin = datetime.now(UTC)
        self._started = self._origin

    def now(self) -> datetime:
        real = datetime.now(UTC)
        if self._speed == 1.0:
            return real
        return self._origin + (real - self._started) * self._speed


class FrozenClock:
    """A clock that only moves when told to: for tests."""

    def __init__(self, start: datetime) -> None:
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> None:
        self._now += delta

    def set(self, moment: datetime) -> None:
        self._now = moment
