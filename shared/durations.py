"""Durations as policy files write them: "90s", "15m", "4h", "1d12h" (1d = 24 h)."""

from __future__ import annotations

import re

_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(text: str) -> float:
    """"90s", "15m", "4h", "1d12h" → seconds."""
    match = _DURATION.match(text)
    if not text or not match:
        raise ValueError(f"{text!r} is not a duration like 90s, 15m, 4h or 1d12h")
    d, h, m, s = (int(g or 0) for g in match.groups())
    return float(((d * 24 + h) * 60 + m) * 60 + s)


def positive_duration(value: str, message: str) -> str:
    """`value` unchanged if it parses to more than zero seconds; else ValueError(message)."""
    if parse_duration(value) <= 0:
        raise ValueError(message)
    return value
