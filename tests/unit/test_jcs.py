"""The log's RFC 8785 serialisation: byte for byte the reference implementation (`rfc8785`) on
generated values, and the RFC's own examples."""

from __future__ import annotations

import math
from typing import Any

import pytest
import rfc8785
from hypothesis import example, given, settings
from hypothesis import strategies as st

from shared.caselog.jcs import canonicalize

# Keys and text with the characters where serialisers differ: controls, quotes, backslashes,
# U+007F, U+2028, BMP characters above the surrogates, and characters beyond U+FFFF.
CHARS = st.sampled_from(
    ["a", "B", "1", '"', "\\", "/", "\x00", "\x1f", "\n", "\t", "\x7f", "é", "€", "\u2028",
     "\ufb33", "\uffee", "\U0001f600", "\U00010000"]) | st.characters(
    blacklist_categories=["Cs"])
TEXT = st.text(CHARS, max_size=8)
FLOATS = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(
    [0.0, -0.0, 1.0, 1e-4, 9.999e-5, 1e-6, 1e-7, 1e16, 1e21, 1e22, 2.0**53, 2.0**53 + 2,
     123456789012345680.0, 0.1, 5e-324, 1.7976931348623157e308, 333333333.3333333])
INTS = st.integers(-(2**53) + 1, 2**53 - 1)
SCALARS = st.none() | st.booleans() | INTS | FLOATS | TEXT
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=20,
)


def reference(value: Any) -> str:
    return rfc8785.dumps(value).decode("utf-8")


@settings(max_examples=2_000)
@given(value=VALUES)
@example(value={"\ufb33": 1, "\U0001f600": 2})  # code point and UTF-16 order disagree
@example(value=[1e-5, 1e21, -0.0, 1.0, 2.0**60])
def test_the_same_text_as_the_reference(value: Any) -> None:
    assert canonicalize(value) == reference(value)


@given(value=st.integers(min_value=2**53) | st.integers(max_value=-(2**53)))
def test_integers_beyond_the_double_range_are_refused_like_the_reference(value: int) -> None:
    with pytest.raises(rfc8785.CanonicalizationError):
        reference(value)
    with pytest.raises(rfc8785.CanonicalizationError):
        canonicalize({"n": value})


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, "\ud800", {"k\udc00": 1}])
def test_what_jcs_cannot_express_is_refused(value: Any) -> None:
    with pytest.raises(rfc8785.CanonicalizationError):
        canonicalize([value])


def test_the_rfc_examples() -> None:
    # RFC 8785 section 3.2.2.3 (numbers) and 3.2.3 (sorting of keys by UTF-16 code units).
    assert canonicalize([333333333.33333329, 1e30, 4.50, 2e-3, 0.000000000000000000000000001]) \
        == "[333333333.3333333,1e+30,4.5,0.002,1e-27]"
    keys = {"\u20ac": "Euro Sign", "\r": "Carriage Return", "\ufb33": "Hebrew Letter Dalet",
            "1": "One", "\U0001f600": "Emoji: Grinning Face", "\u0080": "Control",
            "\u00f6": "Latin Small Letter O With Diaeresis"}
    assert list(__import__("json").loads(canonicalize(keys))) == [
        "\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]
    assert canonicalize({"b": [True, None, "\u2028\x0f"], "a": -0.0}) == \
        '{"a":0,"b":[true,null,"\u2028\\u000f"]}'
