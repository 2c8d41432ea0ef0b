"""Masking of card numbers, bank and national identifiers and secrets before anything is logged or
published, in time linear in the text.

What is caught, and how it reads once masked, is tabled in docs/intake.md ("Redaction"):
- card numbers however they are typed, pasted or said (`redaction_cards`, `redaction_spoken`):
  `[card ****1111]`, and a CVV or expiry after them `[redacted]`;
- IBANs with a valid check (`[iban DE ****3000]`), US SSNs (`[ssn ****6789]`), UK National
  Insurance numbers (`[ni ****456C]`) (`redaction_ids`);
- stated secrets, keys, tokens, a CVV or expiry after its label (`redaction_secrets`): `[redacted]`;
- `extra` patterns (the operator's `INTAKE_REDACTION_PATTERNS`): `[redacted]`.

Detectors read a copy of the text with every decimal digit as ASCII (fullwidth, Arabic-Indic …), of
the same length, so positions carry over; overlapping findings are masked once (`redaction_spans`).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable
from typing import Any

from shared.redaction_cards import card_spans, luhn_valid
from shared.redaction_ids import iban_spans, national_id_spans
from shared.redaction_secrets import secret_spans
from shared.redaction_spans import apply

__all__ = ["compile_patterns", "luhn_valid", "redact", "redact_tree"]


class _DigitFold(dict[int, int]):
    """str.translate table: any decimal digit to its ASCII digit, everything else to itself."""

    def __missing__(self, code: int) -> int:
        char = chr(code)
        folded = ord("0") + unicodedata.decimal(char) if char.isdecimal() else code
        self[code] = folded
        return folded


_FOLD = _DigitFold()
_NO_DIGITS = str.maketrans("", "", "0123456789")


def redact(text: str, extra: Iterable[re.Pattern[str]] = ()) -> str:
    """Return `text` with card numbers, identifiers, secrets and `extra` masked."""
    for pattern in extra:
        text = _masked_by(pattern, text)
    view = text if text.isascii() else text.translate(_FOLD)
    count = len(view) - len(view.translate(_NO_DIGITS))
    spans = (iban_spans(view, count) + card_spans(view, count) + national_id_spans(view, count)
             + secret_spans(view, count))
    return apply(text, spans)


def compile_patterns(patterns: Iterable[str]) -> tuple[re.Pattern[str], ...]:
    """Configured extra patterns; a bad expression fails at start-up, not on a customer's text.

    They are matched with RE2 (google-re2), whose time is linear in the text whatever the
    expression, so an operator's pattern cannot stall intake on a crafted message. RE2 syntax is
    Python's without lookaround and backreferences, and with ASCII `\\d`, `\\w`, `\\b`; a pattern
    RE2 cannot run, or one that matches the empty string, is refused here.
    """
    compiled = []
    for source in patterns:
        pattern = re.compile(source)
        if pattern.fullmatch(""):
            raise re.error("the pattern matches the empty string", pattern=source)
        try:
            _linear_engine(pattern.pattern, pattern.flags)
        except Exception as exc:  # re2.error
            raise re.error(f"RE2 cannot run this pattern: {exc}", pattern=source) from exc
        compiled.append(pattern)
    return tuple(compiled)


@functools.lru_cache(maxsize=256)
def _linear_engine(source: str, flags: int) -> Any:
    import re2  # type: ignore[import-not-found,unused-ignore]

    options = re2.Options()
    options.log_errors = False
    inline = "".join(f for f, bit in (("i", re.IGNORECASE), ("m", re.MULTILINE), ("s", re.DOTALL))
                     if flags & bit)
    return re2.compile(f"(?{inline}){source}" if inline else source, options)


def _masked_by(pattern: re.Pattern[str], text: str) -> str:
    try:
        engine = _linear_engine(pattern.pattern, pattern.flags)
    except Exception:  # not from compile_patterns, and beyond RE2: Python's engine
        return pattern.sub("[redacted]", text)
    data = text.encode("utf-8", "surrogatepass")
    if engine.search(data) is None:
        return text
    out, position = [], 0
    for match in engine.finditer(data):  # bytes: no per-match offset conversion
        start, end = match.span()
        out += [data[position:start], b"[redacted]"]
        position = end
    out.append(data[position:])
    return b"".join(out).decode("utf-8", "surrogatepass")


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
