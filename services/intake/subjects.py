"""Subjects for threading: the case token and the normalised subject.

A reply keeps the case token we put in our answers' subjects ("[#SB-1A2B3C4D5E6F]"), whatever
the client does to the rest. The token is keyed (HMAC of the case id under the configured key,
48 bits): nobody can compute another case's token from its id. Tokens of 8 hex digits that
earlier versions handed out are still recognised (they are looked up, never derived again).
Without headers or a token, the same customer writing the same subject again soon is very
likely the same matter; clients prefix replies and forwards in their own
language ("Re:", "AW:", "SV:", "RE[2]:", "Fwd:", "TR:" …), which normalisation removes.
"""

from __future__ import annotations

import base64
import re

from shared.keys import Keyring, keyring

# RFC 5322 lines are at most 998 characters; a subject is only ever looked at that far.
MAX_SUBJECT = 998
_TOKEN = re.compile(r"\[#?(SB-(?:[0-9A-F]{12}|[0-9A-F]{8}))\]", re.IGNORECASE)
# No two `\s*` may meet (the old pattern had `\s*(?:[n])?\s*`, quadratic on a run of spaces):
# the optional counter carries its own trailing spaces.
_PREFIX = re.compile(
    r"^\s*(?:(?:re|aw|sv|vs|antw|antwort|ref|rif|odp|fw|fwd|wg|tr|rv|enc|vb|doorst|\u56de\u590d"
    r"|\u8f6c\u53d1|\u7b54\u590d|r)\s*(?:(?:\[\d+\]|\(\d+\))\s*)?[:\uff1a]\s*)+",
    re.IGNORECASE,
)


def case_reference(case_id: str, ring: Keyring | None = None) -> str:
    """The short token of a case: derived from its id under the key (no counter to
    coordinate), so only Switchboard can make it; a reply with it still joins the case only
    if its sender is a participant (docs/intake.md, "Threading")."""
    digest = (ring or keyring()).token("case-reference", case_id)
    return "SB-" + base64.b16encode(digest[:6]).decode()


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
