"""Card numbers and stated secrets never survive `redact` (guarantee 6)."""

from __future__ import annotations

import re

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from shared.redaction import compile_patterns, luhn_valid, redact
from shared.redaction_secrets import STOP_WORDS
from shared.redaction_spoken import WORDS


def luhn_check_digit(partial: str) -> str:
    """The digit that makes `partial + digit` pass the Luhn check (written independently)."""
    total = 0
    for index, char in enumerate(reversed(partial)):
        value = int(char) * (2 if index % 2 == 0 else 1)
        total += value - 9 if value > 9 else value
    return str((10 - total % 10) % 10)


@st.composite
def pans(draw: st.DrawFn) -> str:
    length = draw(st.integers(min_value=13, max_value=19))
    body = draw(st.text(alphabet="0123456789", min_size=length - 2, max_size=length - 2))
    partial = draw(st.sampled_from("23456")) + body
    return partial + luhn_check_digit(partial)


@st.composite
def non_luhn_numbers(draw: st.DrawFn) -> str:
    length = draw(st.integers(min_value=13, max_value=19))
    partial = draw(st.text(alphabet="0123456789", min_size=length - 1, max_size=length - 1))
    wrong = (int(luhn_check_digit(partial)) + draw(st.integers(1, 9))) % 10
    return partial + str(wrong)


def typed(pan: str, style: str, separator: str) -> str:
    """The PAN as a person types it: plain, in fours, or 4-6-5 for 15 digits (Amex)."""
    if style == "amex" and len(pan) == 15:
        return separator.join([pan[:4], pan[4:10], pan[10:]])
    if style == "plain":
        return pan
    return separator.join(pan[i : i + 4] for i in range(0, len(pan), 4))


def standalone(prefix: str, suffix: str) -> bool:
    """The number does not run into digits or number words of the surrounding text (else it is
    another number) and is not written right after "+" (a phone number)."""
    before = re.search(r"([^\W\d_]*)\W{0,40}$", prefix)
    after = re.match(r"\W{0,40}([^\W\d_]*)", suffix)
    words = {before.group(1).lower() if before else "", after.group(1).lower() if after else ""}
    return (not re.search(r"\d\W{0,40}$", prefix) and not re.match(r"\W{0,40}\d", suffix)
            and not prefix.endswith("+") and not words & WORDS.keys())


def label_ok(out: str, pan: str, style: str) -> bool:
    """The mask shows the card's last four, or, for an 18/19-digit card in fours whose first 16
    digits are a card number too, those 16 and the rest as a CVV or expiry (which they are read as:
    "4111 1111 1111 1111 123" is a card and its CVV far more often than a 19-digit card)."""
    shorter = pan[:16]
    return pan[-4:] in out or (style != "plain" and len(pan) in (18, 19)
                               and luhn_valid(shorter) and f"****{shorter[-4:]}" in out)


STYLES = st.sampled_from(["plain", "fours", "amex"])
SEPARATORS = st.sampled_from([" ", "-"])


def test_the_check_digit_helper_agrees_with_luhn() -> None:
    assert luhn_check_digit("411111111111111") == "1"
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")


@given(pan=pans(), style=STYLES, separator=SEPARATORS, prefix=st.text(max_size=40),
       suffix=st.text(max_size=40))
@example(pan="378282246310005", style="amex", separator=" ", prefix="Amex: ", suffix=".")
@example(pan="4111111111111111", style="fours", separator="-", prefix="", suffix="")
@example(pan="4111111111111111", style="plain", separator=" ", prefix="my pin ", suffix="!")
def test_a_card_number_never_survives(
    pan: str, style: str, separator: str, prefix: str, suffix: str
) -> None:
    form = typed(pan, style, separator)
    assume(standalone(prefix, suffix))
    out = redact(prefix + form + suffix)
    assert pan not in out
    assert form not in out
    assert label_ok(out, pan, style)


@given(pan=pans(), separator=SEPARATORS, before=st.booleans(),
       neighbour=st.sampled_from(["7", "12", "123", "0425", "2024", "98765"]))
@example(pan="4111111111111111", separator=" ", before=False, neighbour="123")
@example(pan="4111111111111111", separator=" ", before=True, neighbour="12")
def test_a_number_written_beside_the_card_number_does_not_hide_it(
    pan: str, separator: str, before: bool, neighbour: str
) -> None:
    """A reference number before it, or a CVV or expiry after it, in the same run of groups."""
    grouped = typed(pan, "fours", separator)
    text = (f"ref {neighbour}{separator}{grouped} ok" if before
            else f"card {grouped}{separator}{neighbour} ok")
    out = redact(text)
    assert pan not in out and grouped not in out
    assert pan not in re.sub(r"\D", "", out)


@given(pan=pans(), tail=st.text(alphabet="0123456789", min_size=1, max_size=10))
@example(pan="4111111111111111", tail="0073868")  # 1111…0073868 is Luhn-valid and longer
def test_no_group_of_a_card_stays_readable_beside_a_longer_valid_window(
    pan: str, tail: str
) -> None:
    """Whichever overlapping window labels the mask, every group of the card is under it."""
    grouped = typed(pan, "fours", " ")
    out = redact(f"card {grouped} {tail} ok")
    assert out.startswith("card [")
    readable = re.sub(r"\D", "", re.sub(r"\[[^\]]*\]", "", out))
    assert tail.endswith(readable)


@given(number=non_luhn_numbers())
def test_digit_runs_that_fail_luhn_are_kept(number: str) -> None:
    text = f"Order {number} was shipped"
    assert redact(text) == text


@given(number=st.text(alphabet="0123456789", min_size=20, max_size=40))
def test_long_unbroken_numbers_are_kept(number: str) -> None:
    """Tracking numbers are longer than any card number; no part of them is taken for one."""
    text = f"tracking {number}."
    assert redact(text) == text


def test_a_grouped_order_number_that_fails_luhn_is_kept() -> None:
    number = "1234 5678 9012 3456"
    assert not luhn_valid(number.replace(" ", ""))
    assert redact(f"order {number}") == f"order {number}"


@pytest.mark.parametrize(("text", "expected"), [
    ("card 4111111111111111 exp 12/27 cvv 123",
     "card [card ****1111] exp [redacted] cvv [redacted]"),
    ("4111 1111 1111 1111, expiry 09/2027, CVV: 737 thanks",
     "[card ****1111], expiry [redacted], CVV: [redacted] thanks"),
    ("4111-1111-1111-1111 123", "[card ****1111] [redacted]"),
    ("5500 0000 0000 0004 12/27", "[card ****0004] [redacted]"),
])
def test_a_cvv_or_expiry_after_a_card_number_is_masked(text: str, expected: str) -> None:
    assert redact(text) == expected


@given(first=pans(), second=pans(), separator=st.sampled_from([" ", "-", ", ", " and "]),
       grouped=st.booleans())
# "4111111111119 3400" is Luhn-valid too: it must not win over the two real numbers.
@example(first="4111111111119", second="3400111122223337", separator=" ", grouped=True)
def test_two_card_numbers_side_by_side_are_both_masked(
    first: str, second: str, separator: str, grouped: bool
) -> None:
    """The second number is never taken for the first one's CVV and left half visible."""
    form = typed(second, "fours" if grouped else "plain", " ")
    out = redact(f"{first}{separator}{form}")
    assert first not in out and second not in out and form not in out
    digits_left = re.sub(r"\D", "", out)
    assert len(digits_left) <= 8  # at most the two last fours


def test_a_three_digit_number_far_from_a_card_is_kept() -> None:
    assert redact("card 4111111111111111 and room 123") == "card [card ****1111] and room 123"


CODE_LABELS = ("PIN", "otp", "verification code")


@given(secret=st.text(st.characters(exclude_categories=["Z", "C", "Nd"]), min_size=1,
                      max_size=30).filter(lambda s: s[0] not in ":=\"'“‘«„‚`»[："
                                          and not s.startswith(("->", "=>"))),
       label=st.sampled_from(["password", "Password", "passcode", *CODE_LABELS]),
       verb=st.sampled_from([" is ", " was ", ": ", " = ", " "]))
@example(secret="hunter2", label="password", verb=" is ")
@example(secret="wasabi99", label="password", verb=" ")  # not "was" + "abi99"
@example(secret="island", label="PIN", verb=" is ")  # not "is" + "land"
@example(secret="is1and", label="PIN", verb=" ")
def test_a_stated_secret_is_masked(secret: str, label: str, verb: str) -> None:
    """With only a space after it, a code's value needs a digit ("pin the message" is no PIN);
    a word that says something about the secret ("is not working") is not taken for it."""
    if verb == " " and label in CODE_LABELS and not any(c.isdigit() for c in secret):
        secret += "7"
    assume(secret.rstrip(".,;:?!)]}\"'»”’").lower() not in STOP_WORDS)
    assert redact(f"my {label}{verb}{secret}") == f"my {label}{verb}[redacted]"


def test_text_without_secrets_is_unchanged() -> None:
    text = "Hi, my parcel #4521 has not arrived since 2024-03-01. Call me at +1 415 555 0123."
    assert redact(text) == text


def test_configured_patterns_run_on_a_linear_time_engine() -> None:
    """An operator's pattern that backtracks catastrophically in Python's re finishes at once:
    it is matched with RE2 (the input would take Python's engine longer than the universe)."""
    (pattern,) = compile_patterns([r"(a+)+b"])
    assert redact("a" * 5_000 + "!", (pattern,)) == "a" * 5_000 + "!"
    assert redact("xx aab yy", (pattern,)) == "xx [redacted] yy"


@pytest.mark.parametrize("source", [r"(?<=ACCT)\d+", r"(\d)\1", r"x*", r"("])
def test_patterns_re2_cannot_run_or_that_match_nothing_are_refused_at_start_up(
        source: str) -> None:
    with pytest.raises(re.error):
        compile_patterns([source])


def test_configured_patterns_keep_their_flags_and_survive_non_ascii_text() -> None:
    (pattern,) = compile_patterns([r"(?i)acct-\d{4}"])
    assert redact("Grüße ACCT-1234 ☃", (pattern,)) == "Grüße [redacted] ☃"


@given(text=st.text(max_size=200))
def test_redacting_twice_changes_nothing_more(text: str) -> None:
    once = redact(text)
    assert redact(once) == once
