"""Bank and national identifiers: IBAN, US SSN, UK National Insurance number.

Validation comes from python-stdnum (the IBAN registry with each country's length, ISO 7064
mod 97-10, the SSA's rules for SSNs); finding them is ours, with patterns that read each character
a bounded number of times.
"""

from __future__ import annotations

import re

from stdnum import numdb
from stdnum.iso7064 import mod_97_10
from stdnum.us import ssn

from shared.redaction_spans import IBAN, NATIONAL_ID, Span

# Country code → IBAN length, from the SWIFT registry that python-stdnum ships.
_IBAN_LENGTH = {
    prefix: 4 + sum(int(n) for n in re.findall(r"([0-9]+)!", props.get("bban", "")))
    for _, prefix, _, props, _ in numdb.get("iban").prefixes
    if len(prefix) == 2 and props.get("bban")
}
_IBAN_SEP = "[ \u00a0\u202f\\-.]"
# An IBAN starts a token: two letters and two digits; the rest is read with the country's length.
_IBAN_START = re.compile(rf"(?<![^\W_])[A-Za-z]{{2}}[0-9]{{2}}(?={_IBAN_SEP}?[A-Za-z0-9])")
_IBAN_REST: dict[int, re.Pattern[str]] = {}
_ALNUM = re.compile(r"[A-Za-z0-9]")

_SSN = re.compile(
    r"(?<![0-9])(?<![0-9][-. ])(?P<a>[0-9]{3})(?P<sep>[- ])(?P<g>[0-9]{2})(?P=sep)(?P<s>[0-9]{4})"
    r"(?![0-9])(?![-. ][0-9])")
_SSN_LABELLED = re.compile(
    r"(?<![^\W_])(?:ssn|ss#|social security(?:[ \t]{1,2}(?:number|no\.?|#))?|soc\.?[ \t]?sec\.?"
    r"(?:[ \t]{1,2}(?:number|no\.?|#))?)[ \t]{0,3}(?:(?:is|was|:|#|=)[ \t:]{0,3}){0,2}"
    r"(?P<n>[0-9]{3}[- ]?[0-9]{2}[- ]?[0-9]{4})(?![0-9])",
    re.IGNORECASE)
# HMRC: no D, F, I, Q, U, V as either prefix letter, no O as the second; suffix A–D.
_NINO = re.compile(
    r"(?<![A-Za-z0-9])(?P<p>[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z])"
    r"(?:(?P<d>[0-9]{6})|[ \u00a0](?P<d1>[0-9]{2})[ \u00a0](?P<d2>[0-9]{2})[ \u00a0]"
    r"(?P<d3>[0-9]{2})[ \u00a0]?)(?P<s>[A-D])(?![A-Za-z0-9])")
# Written in one piece, any case will do ("ab123456c").
_NINO_LOWER = re.compile(
    r"(?<![A-Za-z0-9])(?P<p>[a-ceghj-pr-tw-z][a-ceghj-npr-tw-z])(?P<d>[0-9]{6})(?P<s>[a-d])"
    r"(?![A-Za-z0-9])", re.IGNORECASE)
_NINO_NOT_ALLOCATED = {"BG", "GB", "NK", "KN", "TN", "NT", "ZZ"}


def iban_spans(view: str) -> list[Span]:
    spans = []
    position = 0
    for match in _IBAN_START.finditer(view):
        if match.start() < position:
            continue
        country = match.group()[:2].upper()
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
        compact = (match.group() + "".join(_ALNUM.findall(tail.group()))).upper()
        if mod_97_10.is_valid(compact[4:] + compact[:4]):
            spans.append(Span(match.start(), tail.end(), f"[iban {country} ****{compact[-4:]}]",
                              IBAN))
            position = tail.end()
    return spans


def national_id_spans(view: str) -> list[Span]:
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
