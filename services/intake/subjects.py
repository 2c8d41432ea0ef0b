"""Subjects for threading: the case token and the normalised subject.

A reply keeps the case token we put in our answers' subjects ("[#SB-1A2B3C4D]"), whatever the
client does to the rest. Without headers or a token, the same customer writing the same subject
again soon is very likely the same matter; clients prefix replies and forwards in their own
language ("Re:", "AW:", "SV:", "RE[2]:", "Fwd:", "TR:" …), which normalisation removes.
"""

from __future__ import annotations

import re

from shared.contracts.base import derive_event_id

# RFC 5322 lines are at most 998 characters; a subject is only ever looked at that far.
MAX_SUBJECT = 998
_TOKEN = re.compile(r"\[#?(SB-[0-9A-F]{8})\]", re.IGNORECASE)
# No two `\s*` may meet (the old pattern had `\s*(?:[n])?\s*`, quadratic on a run of spaces):
# the optional counter carries its own trailing spaces.
_PREFIX = re.compile(
    r"^\s*(?:(?:re|aw|sv|vs|antw|antwort|ref|rif|odp|fw|fwd|wg|tr|rv|enc|vb|doorst|\u56de\u590d"
    r"|\u8f6c\u53d1|\u7b54\u590d|r)\s*(?:(?:\[\d+\]|\(\d+\))\s*)?[:\uff1a]\s*)+",
    re.IGNORECASE,
)


def case_reference(case_id: str) -> str:
    """The short token of a case: stable, derived from its id (no counter to coordinate)."""
    return "SB-" + derive_event_id(case_id, "reference").hex[:8].upper()


def reference_in(subject: str | None) -> str | None:
    found = _TOKEN.search((subject or "")[:MAX_SUBJECT])
    return found.group(1).upper() if found else None


def normalise_subject(subject: str | None) -> str:
    text = _TOKEN.sub(" ", (subject or "")[:MAX_SUBJECT])
    previous = None
    while previous != text:  # "Re: Fwd: AW: …" and "[External] Re: …"
        previous = text
        text = _PREFIX.sub("", re.sub(r"^\s*\[[^\]]{1,30}\]\s*", "", text))
    return " ".join(text.lower().split())
