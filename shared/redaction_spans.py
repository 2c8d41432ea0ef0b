"""What the redaction detectors return, and how overlapping findings become one mask.

Every detector reports spans of the text to mask with a priority. Overlapping spans merge into
their union, masked once with the replacement of the highest-priority span in it, so a secret
whose value is a card number reads `[card ****1111]` and a card number inside an IBAN reads as
the IBAN.
"""

from __future__ import annotations

from operator import itemgetter
from typing import NamedTuple

# Priorities: a span of a higher kind wins the label of a merged mask.
IBAN, CARD, NATIONAL_ID, TOKEN, SECRET, CARD_DETAIL = 60, 50, 40, 30, 20, 10


class Span(NamedTuple):
    start: int
    end: int
    replacement: str
    priority: int


def apply(text: str, spans: list[Span]) -> str:
    """`text` with every span masked; overlapping spans are masked once, as their union."""
    if not spans:
        return text
    spans.sort(key=itemgetter(0))  # stable: equal starts keep the detectors' order
    out: list[str] = []
    position = 0
    current = spans[0]
    start, end = current.start, current.end
    for span in spans[1:]:
        if span.start < end:  # overlaps the union being built
            end = max(end, span.end)
            if span.priority > current.priority:
                current = span
            continue
        out += [text[position:start], current.replacement]
        position, current, start, end = end, span, span.start, span.end
    out += [text[position:start], current.replacement, text[end:]]
    return "".join(out)
