"""Bank and national identifiers: IBAN, US SSN, UK National Insurance number.

Validation comes from python-stdnum (the IBAN registry with each country's length, ISO 7064
mod 97-10, the SSA's rules for SSNs); finding them is ours, with patterns that read each character
a bounded number of times.
"""

from __future__ import annotations

import re

from stdnum import numdb
from stdnum.us import ssn

from shared.redaction_patterns import first_char_scan, word_branches
from shared.redaction_spans import IBAN, NATIONAL_ID, Span

# Country code → IBAN length, from the SWIFT registry that python-stdnum ships.
_IBAN_LENGTH = {
    prefix: 4 + sum(int(n) for n in re.findall(r"([0-9]+)!", props.get("bban", "")))
    for _, prefix, _, props, _ in numdb.get("iban").prefixes
    if len(prefix) == 2 and props.get("bban")
}
_IBAN_SEP = "[ \u00a0\u202f\\-.]"
# An IBAN starts a token: two letters and two digits; the rest is read with the country's length.
# Found by its first check digit (rare in prose): two letters before it that start a token.
_IBAN_START = re.compile(
    rf"[0-9](?<=[A-Za-z]{{2}}[0-9])(?<![^\W_][A-Za-z]{{2}}[0-9])[0-9]"
    rf"(?={_IBAN_SEP}?[A-Za-z0-9])")
_IBAN_REST: dict[int, re.Pattern[str]] = {}
_NO_SEPARATORS = str.maketrans("", "", " \u00a0\u202f-.")
_BASE36 = str.maketrans({chr(c): str(c - 55) for c in range(ord("A"), ord("Z") + 1)})


def _mod97(number: str) -> int:
    """ISO 7064 mod 97-10 as python-stdnum's `mod_97_10.checksum` computes it, five times faster
    (one `translate` instead of a generator per character): 1 for a valid IBAN."""
    return int(number.translate(_BASE36)) % 97

_SSN = re.compile(
    r"(?P<a>[0-9](?<![0-9].)(?<![0-9][-. ].)[0-9]{2})(?P<sep>[- ])(?P<g>[0-9]{2})(?P=sep)"
    r"(?P<s>[0-9]{4})(?![0-9])(?![-. ][0-9])")
_SSN_LABELS = ["ssn", "ss#", "social security", "social security number", "social security no",
               "social security #", "soc sec", "soc. sec.", "soc sec number", "soc. sec. no."]
_SSN_LABELLED = re.compile(
    first_char_scan(word_branches(_SSN_LABELS, space="[ \t]{1,2}"), r"[^\W_]")
    + r"[ \t]{0,3}(?:(?i:is|was|:|#|=)[ \t:]{0,3}){0,2}"
    r"(?P<n>[0-9]{3}[- ]?[0-9]{2}[- ]?[0-9]{4})(?![0-9])")
# HMRC: no D, F, I, Q, U, V as either prefix letter, no O as the second; suffix A–D.
_NINO = re.compile(
    r"(?P<p>[A-CEGHJ-PR-TW-Z](?<![A-Za-z0-9].)[A-CEGHJ-NPR-TW-Z])"
    r"(?:(?P<d>[0-9]{6})|[ \u00a0](?P<d1>[0-9]{2})[ \u00a0](?P<d2>[0-9]{2})[ \u00a0]"
    r"(?P<d3>[0-9]{2})[ \u00a0]?)(?P<s>[A-D])(?![A-Za-z0-9])")
# Written in one piece, any case will do ("ab123456c").
_NINO_LOWER = re.compile(
    r"(?P<p>[a-ceghj-pr-tw-zA-CEGHJ-PR-TW-Z](?<![A-Za-z0-9].)(?i:[a-ceghj-npr-tw-z]))"
    r"(?P<d>[0-9]{6})(?P<s>(?i:[a-d]))(?![A-Za-z0-9])")
_NINO_NOT_ALLOCATED = {"BG", "GB", "NK", "KN", "TN", "NT", "ZZ"}


def iban_spans(view: str, digit_count: int) -> list[Span]:
    if digit_count < 2 or len(view) < 15:  # the shortest IBAN (Norway) has 15 characters
        return []
    spans = []
    position = 0
    for match in _IBAN_START.finditer(view):
        begin = match.start() - 2
        if begin < position:
            continue
        country = view[begin : match.start()].upper()
        length = _IBAN_LENGTH.get(country)
        if length is None:
            continue
        rest = _IBAN_REST.get(length)
        if rest is None:
            rest = _IBAN_REST[length] = re.compile(
                rf"(?:{_IBAN_SEP}?[A-Za-z0-9]){{{length - 4}}}(?![A-Za-z0-9])")
        tail = rest.match(view, match.end())
        if tail is None:
            continue
        compact = (view[begin : match.end()] + tail.group().translate(_NO_SEPARATORS)).upper()
        if _mod97(compact[4:] + compact[:4]) == 1:
            spans.append(Span(begin, tail.end(), f"[iban {country} ****{compact[-4:]}]", IBAN))
            position = tail.end()
    return spans


def national_id_spans(view: str, digit_count: int) -> list[Span]:
    if digit_count < 6:  # an NI number has 6, an SSN 9
        return []
    spans = []
    for match in _SSN.finditer(view):
        number = match.group("a") + match.group("g") + match.group("s")
        if ssn.is_valid(number):
            spans.append(Span(match.start(), match.end(), f"[ssn ****{number[-4:]}]", NATIONAL_ID))
    for match in _SSN_LABELLED.finditer(view):
        number = re.sub(r"[- ]", "", match.group("n"))
        if ssn.is_valid(number):
            spans.append(Span(match.start("n"), match.end(), f"[ssn ****{number[-4:]}]",
                              NATIONAL_ID))
    for pattern in (_NINO, _NINO_LOWER):
        for match in pattern.finditer(view):
            if match.group("p").upper() in _NINO_NOT_ALLOCATED:
                continue
            digits = match.group("d") or "".join(match.group(g) for g in ("d1", "d2", "d3"))
            spans.append(Span(match.start(), match.end(),
                              f"[ni ****{digits[-3:]}{match.group('s').upper()}]", NATIONAL_ID))
    return spans
