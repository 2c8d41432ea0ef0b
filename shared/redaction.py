"""Masking of payment card numbers and stated secrets before anything is logged or published.

A card number is a run of 13–19 digits, possibly split by single spaces or dashes, that passes the
Luhn check; it is masked to its last four digits. A CVV or expiry written right after it goes too.
"""

from __future__ import annotations

import re

_PAN = re.compile(r"(?<![\d])(?:\d[ -]?){12,18}\d(?![\d])")
_CVV_AFTER = re.compile(
    r"^(?P<sep>[\s,;:/-]*(?:(?:cvv|cvc|cvv2|security code|exp(?:iry|iration)?|expires)"
    r"[\s:#.-]*)?)(?P<val>\d{3,4}|\d{2}\s*/\s*\d{2,4})(?!\d)",
    re.IGNORECASE,
)
_SECRET = re.compile(
    r"(?P<label>\b(?:password|passcode|pin|one[- ]time code|otp|verification code|security code)"
    r"\b(?:\s+(?:is|was|=|:))?\s*[:=]?\s*)(?P<value>\S+)",
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


def redact(text: str) -> str:
    """Return `text` with card numbers, trailing CVV/expiry and stated secrets masked."""
    out: list[str] = []
    position = 0
    for match in _PAN.finditer(text):
        digits = re.sub(r"\D", "", match.group())
        if not (13 <= len(digits) <= 19 and luhn_valid(digits)):
            continue
        out.append(text[position : match.start()])
        out.append(f"[card ****{digits[-4:]}]")
        position = match.end()
        for _ in range(2):  # an expiry and a CVV may both follow the number
            tail = _CVV_AFTER.match(text[position:])
            if tail is None:
                break
            out.append(tail.group("sep") + "[redacted]")
            position += tail.end()
    out.append(text[position:])
    return _SECRET.sub(lambda m: f"{m.group('label')}[redacted]", "".join(out))
