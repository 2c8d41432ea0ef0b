"""RFC 8785 (JSON Canonicalization Scheme) for the values our events produce, fast enough for the
hot path.

The reference is the `rfc8785` package (Trail of Bits, Apache-2.0): a pure-Python serializer
that costs ~4x `json.dumps` per event (measured in benchmarks/case_log_append.py), too much for
the writer that logs every decision. For the values that pydantic's `model_dump(mode="json")`
gives us, `json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)` already writes
JCS except in three places, which are handled here before it runs:

- numbers: JCS writes a float the way ECMAScript's Number.prototype.toString does. An integral
  float below 2**53 is written as that integer (`1.0` -> `1`, `-0.0` -> `0`): converted to int.
  A non-integral float of magnitude >= 1e-4 is written by Python's `repr` exactly as ECMAScript
  writes it (both the shortest round-trip digits, no exponent below 1e16, and a non-integral
  double is always below 2**52). Anything else (tiny, huge, NaN/Infinity, an int beyond
  2**53-1) goes to the reference implementation, which also refuses what JCS cannot express.
- object keys: JCS sorts by UTF-16 code units, Python by code points; the two orders differ only
  for keys with characters beyond U+FFFF, which also go to the reference implementation.
- strings: both escape exactly `"`, `\\` and U+0000..U+001F (with `\\b \\f \\n \\r \\t` short forms
  and lowercase `\\u00xx`); a lone surrogate is refused when the text is encoded as UTF-8.

`tests/unit/test_jcs.py` compares this with the reference on generated values.
"""

from __future__ import annotations

import json
from typing import Any

import rfc8785

_MAX_SAFE = 2**53 - 1
_dumps = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


class _Slow(Exception):
    """The value needs the reference implementation."""


def _prepare(value: Any) -> Any:
    """The value with integral floats made ints; raises _Slow where json.dumps would differ."""
    t = type(value)
    if t is str or t is bool or value is None:
        return value
    if t is int:
        if -_MAX_SAFE <= value <= _MAX_SAFE:
            return value
        raise _Slow
    if t is float:
        if value.is_integer():
            if -_MAX_SAFE <= value <= _MAX_SAFE:
                return int(value)
            raise _Slow
        if 1e-4 <= abs(value) < 1e16:  # non-integral, finite (NaN compares False, inf is above)
            return value
        raise _Slow
    if t is dict:
        out = {}
        for key, item in value.items():
            if type(key) is not str or not (key.isascii() or max(key) <= "\uffff"):
                raise _Slow
            out[key] = _prepare(item)
        return out
    if t is list or t is tuple:
        return [_prepare(item) for item in value]
    raise _Slow


def canonicalize(value: Any) -> str:
    """The RFC 8785 serialisation of `value` (a JSON-compatible Python value), as text.

    Raises rfc8785.CanonicalizationError for what JCS cannot express (NaN, infinities, integers
    beyond 2**53-1, lone surrogates, non-string keys).
    """
    try:
        text = _dumps(_prepare(value))
    except _Slow:
        return rfc8785.dumps(value).decode("utf-8")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise rfc8785.CanonicalizationError("input contains non-UTF-8 codepoints") from e
    return text
