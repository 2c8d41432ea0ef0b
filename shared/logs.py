"""Logging that stays readable during an outage: one line per kind of failure every N seconds.

A broker restart makes every client fail many times a second; logging each failure buries the
one line an operator needs (and cost the router ~5,000 lines/s in a 9 s outage). Lines of one
format are let through once per interval, with the count of those held back since.
"""

from __future__ import annotations

import logging
import time
from typing import Any


class RateLimitedLog:
    def __init__(self, logger: logging.Logger, every_seconds: float = 10.0) -> None:
        self._logger, self._every = logger, every_seconds
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def _allow(self, fmt: str) -> int | None:
        now = time.monotonic()
        last = self._last.get(fmt)
        if last is not None and now - last < self._every:
            self._held[fmt] = self._held.get(fmt, 0) + 1
            return None
        self._last[fmt] = now
        return self._held.pop(fmt, 0)

    def warning(self, fmt: str, *args: Any) -> None:
        self._emit(logging.WARNING, fmt, args)

    def error(self, fmt: str, *args: Any) -> None:
        self._emit(logging.ERROR, fmt, args)

    def _emit(self, level: int, fmt: str, args: tuple[Any, ...]) -> None:
        held = self._allow(fmt)
        if held is None:
            return
        suffix = f" ({held} more like this held back)" if held else ""
        self._logger.log(level, fmt + suffix, *args)  # noqa: G003 - extends the template itself


class RateLimitFilter(logging.Filter):
    """For a library's logger (aiokafka logs each failed connection attempt at ERROR, thousands
    a second while a broker restarts): each message template passes once per interval; the
    next one that passes says how many were held back."""

    def __init__(self, every_seconds: float = 10.0,
                 loggers: tuple[str, ...] = ("aiokafka",)) -> None:
        super().__init__()
        self._every, self._loggers = every_seconds, loggers
        self._last: dict[tuple[str, object], float] = {}
        self._held: dict[tuple[str, object], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self._loggers):
            return True  # our own lines are rate-limited where they are written, if at all
        key = (record.name, record.msg)
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self._every:
            self._held[key] = self._held.get(key, 0) + 1
            return False
        self._last[key] = now
        held = self._held.pop(key, 0)
        if held:
            record.msg = f"{record.msg} ({held} more like this held back)"
        return True
