"""Bank and national identifiers: IBAN, US SSN, UK National Insurance number.

Validation comes from python-stdnum (the IBAN registry with each country's length, ISO 7064
mod 97-10, the SSA's rules for SSNs); finding them is ours, with patterns that read each character
a bounded number of times.
"""

from __future__ import annotations

import re

from stdnum import numdb
from stdnum.us import ssn

from shared.redaction_patterns import WordStart, first_char_scan, word_branches
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
_SSN_LABELLED = WordStart(
    first_char_scan(word_branches(_SSN_LABELS, space="[ \t]{1,2}"), r"[^\W_]")
    + r"[ \t]{0,3}(?:(?i:is|was|:|#|=)[ \t:]{0,3}){0,2}"
    r"(?P<n>[0-9]{3}[- ]?[0-9]{2}[- ]?[0-9]{4})(?![0-9])")
# HMRC: no D, F, I, Q, U, V as either prefix letter, no O as the second; suffix A–D. Both forms
# are found from their first digit (rare in prose), the prefix read before it: "AB123456C" in any
# case, "AB 12 34 56 C" in capitals.
_NINO_PREFIX = re.compile(r"[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]")
_NINO = re.compile(
    r"[0-9](?<=[A-Za-z]{2}[0-9])(?<![A-Za-z0-9][A-Za-z]{2}[0-9])[0-9]{5}(?P<s>[A-Da-d])"
    r"(?![A-Za-z0-9])")
_NINO_SPACED = re.compile(
    r"[0-9](?<=[A-Z]{2}[ \u00a0][0-9])(?<![A-Za-z0-9][A-Z]{2}[ \u00a0][0-9])[0-9]"
    r"[ \u00a0][0-9]{2}[ \u00a0][0-9]{2}[ \u00a0]?(?P<s>[A-D])(?![A-Za-z0-9])")
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
    for pattern, gap in ((_NINO, 0), (_NINO_SPACED, 1)):
        for match in pattern.finditer(view):
            begin = match.start() - 2 - gap
            prefix = view[begin : begin + 2].upper()
            if _NINO_PREFIX.fullmatch(prefix) and prefix not in _NINO_NOT_ALLOCATED:
                digits = re.sub(r"[^0-9]", "", match.group())
                spans.append(Span(begin, match.end(),
                                  f"[ni ****{digits[-3:]}{match.group('s').upper()}]",
                                  NATIONAL_ID))
    return spans
