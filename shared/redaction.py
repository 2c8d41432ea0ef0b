"""Masking of payment card numbers and stated secrets before anything is logged or published.

A card number is a run of 13–19 digits, possibly split by single spaces or dashes, that passes the
Luhn check; it is masked to its last four digits. A CVV or expiry written right after it goes too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

# A run of digit groups joined by single spaces or dashes; card numbers are looked for inside it.
_RUN = re.compile(r"(?<!\d)\d+(?:[ -]\d+)*")
_GROUP = re.compile(r"\d+")
_CVV_AFTER = re.compile(
    r"(?P<sep>[\s,;:/-]*(?:(?:cvv|cvc|cvv2|security code|exp(?:iry|iration)?|expires)"
    r"[\s:#.-]*)?)(?P<val>\d{3,4}|\d{2}\s*/\s*\d{2,4})(?!\d)",
    re.IGNORECASE,
)
_SECRET = re.compile(
    r"(?P<label>\b(?:password|passcode|pin|one[- ]time code|otp|verification code|security code)"
    r"\b(?:\s+(?:(?:is|was)\b|=|:))?\s*[:=]?\s*)(?P<value>\S+)",
    re.IGNORECASE,
)


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _card_numbers(text: str) -> list[tuple[int, int, str]]:
    """(start, end, digits) of each card number, in order of appearance.

    A card number is a Luhn-valid window of 13–19 digits inside a run of digit groups that starts
    and ends at group boundaries, so a neighbouring number ("ref 12 4111…", a CVV written as
    "4111 1111 1111 1111 123") neither hides it nor is taken for part of it, while an unbroken
    digit string (an order or tracking number) is only ever considered whole. Of the possible
    windows, the non-overlapping set that covers the most digits is masked.
    """
    found: list[tuple[int, int, str]] = []
    for run in _RUN.finditer(text):
        groups = [(g.start(), g.end(), g.group()) for g in _GROUP.finditer(run.group())]
        count = len(groups)
        # covered[i]: most digits maskable in groups i..; last[i]: the window taken at i, if any.
        covered = [0] * (count + 1)
        last: list[int | None] = [None] * (count + 1)
        for first in range(count - 1, -1, -1):
            covered[first], digits = covered[first + 1], ""
            for end in range(first, count):
                digits += groups[end][2]
                if len(digits) > 19:
                    break
                if (len(digits) >= 13 and len(digits) + covered[end + 1] >= covered[first]
                        and luhn_valid(digits)):
                    covered[first], last[first] = len(digits) + covered[end + 1], end
        index = 0
        while index < count:
            end_group = last[index]
            if end_group is None:
                index += 1
                continue
            digits = "".join(g[2] for g in groups[index : end_group + 1])
            found.append((run.start() + groups[index][0], run.start() + groups[end_group][1],
                          digits))
            index = end_group + 1
    return found


def redact(text: str, extra: Iterable[re.Pattern[str]] = ()) -> str:
    """Return `text` with card numbers, trailing CVV/expiry, stated secrets and `extra` masked."""
    for pattern in extra:
        text = pattern.sub("[redacted]", text)
    out: list[str] = []
    position = 0
    cards = _card_numbers(text)
    for index, (start, end, digits) in enumerate(cards):
        out.append(text[position:start])
        out.append(f"[card ****{digits[-4:]}]")
        position = end
        # The next card number is not this one's CVV.
        limit = cards[index + 1][0] if index + 1 < len(cards) else len(text)
        for _ in range(2):  # an expiry and a CVV may both follow the number
            tail = _CVV_AFTER.match(text, position, limit)  # anchored at `position`
            if tail is None:
                break
            out.append(tail.group("sep") + "[redacted]")
            position = tail.end()
    out.append(text[position:])
    return _SECRET.sub(lambda m: f"{m.group('label')}[redacted]", "".join(out))


def compile_patterns(patterns: Iterable[str]) -> tuple[re.Pattern[str], ...]:
    """Configured extra patterns; a bad expression fails at start-up, not on a customer's text."""
    return tuple(re.compile(p) for p in patterns)


def redact_tree(value: Any, keep: frozenset[str] = frozenset(),
                extra: Iterable[re.Pattern[str]] = ()) -> Any:
    """Every string in a JSON-like tree redacted, except under the keys in `keep`.

    Used on whole event bodies, so a card number typed into any field (a name, a filename, a
    session id shown in details) is masked, not just the fields someone thought of.
    """
    patterns = tuple(extra)
    if isinstance(value, str):
        return redact(value, patterns)
    if isinstance(value, dict):
        return {k: v if k in keep else redact_tree(v, keep, patterns) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_tree(v, keep, patterns) for v in value]
    return value
