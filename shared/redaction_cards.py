"""Card numbers (PANs) as people type, paste and say them, found in time linear in the text.

A *run* is a sequence of digit groups joined by what people and HTML put inside a number: any
whitespace (tabs, NBSP, line breaks), invisible characters (zero-width space, soft hyphen), dashes
(en-dash, minus), dots, slashes, underscores, `|`, HTML tags (`<br>`, `</td><td>`), entities
(`&nbsp;`) and quoted-printable soft breaks (`=` before a line break or a space). Spoken digits
("four one one one …") make runs too (`redaction_spoken`). A *window* is a sequence of whole groups
of a run with 13–19 digits, a first digit other than 0, and a valid Luhn check; an unbroken digit
string is only ever considered whole, so a longer tracking number is never taken apart.

A window of several groups must also be shaped like a card number as written: groups of one size
up to 4 (the last may be shorter: 4-4-4-4, 4-4-4-4-3, one digit at a time), Amex/Diners 4-6-5 and
4-6-4, or any split at all when the window is the whole run but for at most two short (≤ 4 digit)
groups on each side — a number broken by a line, a table cell or an inline tag, with a reference
before it or a CVV after it. This keeps dates, phone and order numbers in a row from being read as
one number. Spoken runs take any split.

Not a card, though Luhn-valid, by their form alone: a run right after `+` of at most 15 digits
(an E.164 phone number); Amazon order numbers (3-7-7); IPv4 addresses; USPS tracking numbers; a
window that reads as a timestamp (YYYYMMDDhhmmss[fff], as in `IMG_20240301_123456.jpg`) or a
valid ISBN-13; a run of dates ("12/03/2024 - 14/03/2024"). A label does not spare a number: a
Luhn-valid order number or IMEI of 13–19 digits is masked like a card (its digits cannot tell).

Of the windows, the non-overlapping set that covers the most digits is masked, preferring a
16-digit or Amex-length number to a longer window that would take in the CVV or expiry written
after it; that CVV or expiry is masked too. The groups of any other valid window overlapping a
chosen one are masked with it, so the choice decides the label, never what stays readable.
Text with so many windows
that choosing would cost too much (only crafted input has them) has every window masked as one.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

from shared.redaction_spans import CARD, CARD_DETAIL, Span
from shared.redaction_spoken import (
    NUMERALS_BEFORE,
    NUMERALS_REACH,
    SPOKEN_RUN,
    SPOKEN_TOKEN,
    digits_of,
)

MIN_DIGITS, MAX_DIGITS = 13, 19
# Above these, windows are enumerated with numpy, and masked as their union.
_PYTHON_GROUPS, _CHOOSE_WINDOWS = 200, 64
_SHORTEST_SPOKEN = MIN_DIGITS  # no shorter text can say 13 digits

_SEP_CHARS = (r"\s\u00ad\u180e\u200b-\u200d\u2060\ufeff"
              r"\-\u2010-\u2015\u2212\ufe58\ufe63\uff0d"
              r".\u00b7\u2024\u2027\uff0e"
              r"/\u2044\u2215\uff0f_|")
_UNIT = (rf"[{_SEP_CHARS}]{{1,40}}+"
         r"|<[A-Za-z/!][^<>]{0,60}>"
         r"|&(?:[A-Za-z]{2,12}|#[0-9]{1,7}|#[xX][0-9A-Fa-f]{1,6});"
         r"|=\s{1,3}")
# Possessive quantifiers and joiners that never start with a digit: each character is read a
# bounded number of times, whatever the input.
_RUN = re.compile(rf"[0-9]++(?:(?:{_UNIT}){{1,8}}[0-9]++)*+")
# A run split at its joiners: digit groups at even indexes, what joins them at odd ones.
_JOINERS = re.compile(rf"((?:{_UNIT})+)")

_AMAZON_ORDER = re.compile(r"[0-9]{3}-[0-9]{7}-[0-9]{7}")
_IPV4 = re.compile(r"(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?:[/:][0-9]{1,5})?")
_DATE = (r"(?:(?:0?[1-9]|[12][0-9]|3[01])(?P<s1>[./\-])(?:0?[1-9]|[12][0-9]|3[01])(?P=s1)"
         r"(?:19|20)?[0-9]{2}|(?:19|20)[0-9]{2}(?P<s2>[./\-])(?:0?[1-9]|1[0-2])(?P=s2)"
         r"(?:0?[1-9]|[12][0-9]|3[01]))")
# Dates in a row ("12/03/2024 - 14/03/2024"): each one a date, whatever joins them.
_DATE_AGAIN = _DATE.replace("s1", "s3").replace("s2", "s4")
_DATES = re.compile(rf"{_DATE}(?:[\s\-\u2013\u2014/|]{{1,5}}{_DATE_AGAIN})*")
_CVV_AFTER = re.compile(
    r"(?P<sep>[\s,;:/-]{0,6}(?:(?:cvv2?|cvc2?|security code|exp(?:iry|iration)?|expires)"
    r"[\s:#.-]{0,6})?)(?P<val>[0-9]{3,4}|[0-9]{2}[ \t]{0,2}/[ \t]{0,2}[0-9]{2,4})(?![0-9])",
    re.IGNORECASE,
)


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


_Groups = tuple[list[int], list[int], list[str]]  # starts, ends, digits of a run's groups


@dataclass(slots=True)
class _Runs:
    """Digit groups of all candidate runs, flattened; a window never crosses two runs."""

    starts: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    digits: list[str] = field(default_factory=list)
    run: list[int] = field(default_factory=list)
    # first group, last group + 1, spoken (any split)
    bounds: list[tuple[int, int, bool]] = field(default_factory=list)

    def add(self, groups: _Groups, spoken: bool) -> None:
        starts, ends, digits = groups
        first = len(self.digits)
        self.starts += starts
        self.ends += ends
        self.digits += digits
        self.run += [len(self.bounds)] * len(digits)
        self.bounds.append((first, len(self.digits), spoken))


def _split(parts: list[str], start: int, tokens_at: int) -> _Groups:
    """Groups of a run split into alternating parts, the groups at `tokens_at` (0 or 1)."""
    offsets = list(accumulate(map(len, parts), initial=start))
    return offsets[tokens_at::2], offsets[tokens_at + 1 :: 2], parts[tokens_at::2]


def card_spans(view: str, digit_count: int) -> list[Span]:
    """Spans of `view` (the text with every decimal digit as ASCII) to mask as card numbers;
    `digit_count` (how many decimal digits it has) skips what cannot match."""
    runs = _Runs()
    for match in _RUN.finditer(view) if digit_count >= MIN_DIGITS else ():
        start, end = match.span()
        if end - start < MIN_DIGITS:
            continue
        groups = _split(_JOINERS.split(match.group()), start, 0)
        total = sum(map(len, groups[2]))
        if total >= MIN_DIGITS and not _not_a_card(view, start, total, groups):
            runs.add(groups, spoken=False)
    for match in SPOKEN_RUN.finditer(view) if len(view) >= _SHORTEST_SPOKEN else ():
        start, end = match.start("word"), match.end()
        before = NUMERALS_BEFORE.search(view, max(0, start - NUMERALS_REACH), start)
        if before is not None:
            start = before.start()
        starts, ends, words = _split(SPOKEN_TOKEN.split(view[start:end]), start, 1)
        digits = [w if w[0] <= "9" else digits_of(w) for w in words]
        if sum(map(len, digits)) >= MIN_DIGITS:
            runs.add((starts, ends, digits), spoken=True)
    if not runs.bounds:
        return []
    if len(runs.digits) <= _PYTHON_GROUPS:
        return _chosen(view, runs, _windows(runs))
    first, last = _windows_numpy(runs)
    if len(first) <= _CHOOSE_WINDOWS:
        return _chosen(view, runs, [(int(i), int(j)) for i, j in zip(first, last, strict=True)])
    return _union(runs, first, last)


def _not_a_card(view: str, start: int, total: int, groups: _Groups) -> bool:
    """Run-level exemptions: a phone number, an order id, an address, dates, USPS tracking."""
    if (start > 0 and view[start - 1] == "+" and total <= 15
            and (start == 1 or not view[start - 2].isalnum())):
        return True
    end, digits = groups[1][-1], groups[2]
    count = len(digits)
    if count % 3 == 0 and _DATES.fullmatch(view, start, end):
        return True
    if count in (4, 5) and _IPV4.fullmatch(view, start, end):
        return True
    if count == 3 and _AMAZON_ORDER.fullmatch(view, start, end):
        return True
    if total in _USPS_LENGTHS and digits[0][0] == "9":
        sizes = list(map(len, digits))
        return (count == 1 or _uniform(sizes, 0, count - 1)) and _usps("".join(digits))
    return False


def _uniform(sizes: list[int], i: int, j: int) -> bool:
    size = sizes[i]
    return size <= 4 and sizes[j] <= size and all(sizes[x] == size for x in range(i + 1, j))


def _brand(sizes: list[int], i: int, j: int) -> bool:
    return j - i == 2 and sizes[i] == 4 and sizes[i + 1] == 6 and sizes[j] in (4, 5)


def _shape_ok(sizes: list[int], i: int, j: int) -> bool:
    if i == j or _uniform(sizes, i, j) or _brand(sizes, i, j):
        return True
    last = len(sizes) - 1
    return (i <= 2 and last - j <= 2 and all(sizes[x] <= 4 for x in range(i))
            and all(sizes[x] <= 4 for x in range(j + 1, last + 1)))


def _windows(runs: _Runs) -> list[tuple[int, int]]:
    """(first group, last group) of every window, in plain Python (few groups)."""
    found = []
    for first, stop, spoken in runs.bounds:
        sizes = [len(d) for d in runs.digits[first:stop]]
        for i in range(len(sizes)):
            if runs.digits[first + i][0] == "0":
                continue
            total = 0
            for j in range(i, len(sizes)):
                total += sizes[j]
                if total > MAX_DIGITS:
                    break
                if (total >= MIN_DIGITS and (spoken or _shape_ok(sizes, i, j))
                        and luhn_valid("".join(runs.digits[first + i : first + j + 1]))):
                    found.append((first + i, first + j))
    return found


def _windows_numpy(runs: _Runs) -> tuple[Any, Any]:
    """The same windows as `_windows`, vectorised over all groups (many groups)."""
    import numpy as np

    count = len(runs.digits)
    sizes = np.fromiter(map(len, runs.digits), dtype=np.int32, count=count)
    run = np.asarray(runs.run, dtype=np.int32)
    bounds = np.asarray(runs.bounds, dtype=np.int32)
    run_first, run_stop = bounds[run, 0], bounds[run, 1]
    spoken = bounds[run, 2].astype(bool)
    index = np.arange(count, dtype=np.int32)
    digits = np.frombuffer("".join(runs.digits).encode("ascii"), dtype=np.uint8) - 48
    total = len(digits)
    offset = np.zeros(count + 1, dtype=np.int32)
    np.cumsum(sizes, out=offset[1:])
    # The group that ends at each digit offset (-1: none), to find a window's last group.
    ending = np.full(total + 1, -1, dtype=np.int32)
    ending[offset[1:]] = index
    doubled = np.array([0, 2, 4, 6, 8, 1, 3, 5, 7, 9], dtype=np.uint8)[digits]
    odd = (np.arange(total) % 2).astype(bool)
    # Luhn sums of any digit range by prefix differences: x for a range whose last digit has an
    # even index (odd indices doubled), y for one whose last digit has an odd index.
    x = np.zeros(total + 1, dtype=np.int32)
    y = np.zeros(total + 1, dtype=np.int32)
    np.cumsum(np.where(odd, doubled, digits), out=x[1:])
    np.cumsum(np.where(odd, digits, doubled), out=y[1:])
    # Groups of equal size from each group on, for the uniform shape.
    change = np.ones(count, dtype=bool)
    change[1:] = (sizes[1:] != sizes[:-1]) | (run[1:] != run[:-1])
    stretch = np.cumsum(change) - 1
    stretch_stop = np.append(np.flatnonzero(change)[1:], count).astype(np.int32)
    equal_from = stretch_stop[stretch] - index
    # The loose shape: at most two groups of ≤ 4 digits before and after the window in its run.
    big = np.zeros(count + 1, dtype=np.int32)
    np.cumsum(sizes > 4, out=big[1:])
    loose_before = (index - run_first <= 2) & (big[index] == big[run_first])
    loose_after = (run_stop - 1 - index <= 2) & (big[run_stop] == big[index + 1])
    # Windows start at a group whose first digit is not 0.
    first = index[digits[offset[:-1]] != 0]
    start = offset[first]
    first_run, first_x, first_y = run[first], x[start], y[start]
    firsts, lasts = [], []
    for length in range(MIN_DIGITS, MAX_DIGITS + 1):
        stop = np.minimum(start + length, total)
        last = ending[stop]
        # Luhn: the last digit's index (stop - 1) decides which prefix sums to take.
        even_end = (start + length) % 2 == 1
        luhn = np.where(even_end, x[stop] - first_x, y[stop] - first_y) % 10 == 0
        keep = np.flatnonzero(luhn & (last >= 0) & (start + length <= total)
                              & (run[last] == first_run))
        i, j = first[keep], last[keep]
        width = j - i + 1
        grouped = (width > 1) & (equal_from[i] >= width - 1) & (sizes[i] <= 4) & (
            sizes[j] <= sizes[i])
        three = width == 3
        grouped[three] |= ((sizes[i[three]] == 4) & (sizes[i[three] + 1] == 6)
                           & ((sizes[j[three]] == 4) | (sizes[j[three]] == 5)))
        shaped = (width == 1) | spoken[i] | grouped | (loose_before[i] & loose_after[j])
        keep = np.flatnonzero(shaped)
        firsts.append(i[keep])
        lasts.append(j[keep])
    return np.concatenate(firsts), np.concatenate(lasts)


_NETWORK = re.compile(
    r"4|5[1-5]|2(?:2[2-9]|[3-6][0-9]|7[01]|720)|3[47]|3[0689]|35|6(?:011|4[4-9]|5|2)")
_TIMESTAMP = re.compile(
    r"(?:19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])"
    r"(?:[01][0-9]|2[0-3])[0-5][0-9][0-5][0-9](?:[0-9]{3})?")


def _score(digits: str, detail_after: bool) -> int:
    """Digits covered, and a preference for a card network's prefix.

    A 16-digit (or Amex) window followed in its run by what reads as a CVV or an expiry is
    preferred to the longer window that takes them in ("4111 1111 1111 1111 123" is a card and
    its CVV, not a 19-digit card whose label would show the CVV).
    """
    common = len(digits) == 16 or (len(digits) == 15 and digits[:2] in ("34", "37"))
    return (len(digits) * 10 + (40 if common and detail_after else 0)
            + (5 if _NETWORK.match(digits) else 0))


def _detail_after(runs: _Runs, j: int) -> bool:
    """The group after `j` in its run has 3–4 digits, or 2 with another group after them."""
    run, sizes = runs.run, runs.digits
    if j + 1 >= len(sizes) or run[j + 1] != run[j]:
        return False
    if len(sizes[j + 1]) in (3, 4):
        return True
    return (len(sizes[j + 1]) == 2 and j + 2 < len(sizes) and run[j + 2] == run[j]
            and len(sizes[j + 2]) in (2, 4))


def _isbn13(digits: str) -> bool:
    return (len(digits) == 13 and digits[:3] in ("978", "979")
            and sum(int(d) * (3 if k % 2 else 1) for k, d in enumerate(digits)) % 10 == 0)


_USPS_LENGTHS = frozenset({20, 22, 26, 30, 34})


def _usps(digits: str) -> bool:
    """A USPS tracking number (20–34 digits from 9, mod-10 check with weights 3 and 1)."""
    body = digits[:-1]
    total = sum(int(d) * (3 if k % 2 == 0 else 1) for k, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10 == int(digits[-1])


def _chosen(view: str, runs: _Runs, windows: list[tuple[int, int]]) -> list[Span]:
    """The best non-overlapping windows (weighted interval scheduling), with CVVs after them."""
    candidates = []
    for i, j in windows:
        digits = "".join(runs.digits[i : j + 1])
        if _TIMESTAMP.fullmatch(digits) or _isbn13(digits):
            continue
        candidates.append((i, j, _score(digits, _detail_after(runs, j)), digits))
    candidates.sort(key=lambda c: (c[1], c[0]))
    ends = [c[1] for c in candidates]
    best = [0] * (len(candidates) + 1)
    for t, (i, _, score, _) in enumerate(candidates):
        before = bisect_right(ends, i - 1, 0, t)  # windows ending before this one starts
        best[t + 1] = max(best[t], score + best[before])
    picked = []
    t = len(candidates)
    while t > 0:
        i, _, score, _ = candidates[t - 1]
        before = bisect_right(ends, i - 1, 0, t - 1)
        if best[t] == score + best[before] and best[t] != best[t - 1]:
            picked.append(candidates[t - 1])
            t = before
        else:
            t -= 1
    picked.reverse()
    spans = _masks(view, runs, picked)
    return _leftovers(runs, candidates, picked, spans)


def _masks(view: str, runs: _Runs, picked: list[Any]) -> list[Span]:
    """A mask for each chosen window, and for the CVV or expiry written after it."""
    spans = []
    for index, (i, j, _, digits) in enumerate(picked):
        position = runs.ends[j]
        spans.append(Span(runs.starts[i], position, f"[card ****{digits[-4:]}]", CARD))
        limit = runs.starts[picked[index + 1][0]] if index + 1 < len(picked) else len(view)
        for _ in range(2):  # an expiry and a CVV may both follow the number
            tail = _CVV_AFTER.match(view, position, limit)
            if tail is None:
                break
            spans.append(Span(tail.start("val"), tail.end(), "[redacted]", CARD_DETAIL))
            position = tail.end()
    return spans


def _leftovers(runs: _Runs, candidates: list[Any], picked: list[Any],
               spans: list[Span]) -> list[Span]:
    """`spans`, with every group of a window not chosen that overlaps a chosen one masked too.

    The choice keeps the best-scoring window, but the digits of a valid window beside it may be
    the real card: in "4111 1111 1111 1111 0073868" the 19 digits from the second group are
    Luhn-valid and score higher than the 16, and masking only them would leave "4111" (the card's
    first group) in clear. Such groups join the chosen window's mask when they touch it, else are
    masked on their own; groups already masked as a CVV or expiry keep that mask.
    """
    masked = [(span.start, span.end) for span in spans]

    def free(group: int) -> bool:
        start, end = runs.starts[group], runs.ends[group]
        return all(end <= lo or start >= hi for lo, hi in masked)

    card_at = {span.start: index for index, span in enumerate(spans) if span.priority == CARD}
    ends = [c[1] for c in candidates]  # candidates are sorted by their last group
    extra = []
    for i, j, _, _ in picked:
        # A window has at most MAX_DIGITS groups, so those overlapping (i, j) end in
        # [i, j + MAX_DIGITS); the groups they cover together are one range, lo..hi.
        lo, hi = i, j
        for ci, cj, _, _ in candidates[bisect_left(ends, i) : bisect_right(ends, j + MAX_DIGITS)]:
            if ci <= j:
                lo, hi = min(lo, ci), max(hi, cj)
        first, last = i, j
        while first > lo and free(first - 1):
            first -= 1
        while last < hi and free(last + 1):
            last += 1
        index = card_at[runs.starts[i]]
        spans[index] = spans[index]._replace(start=runs.starts[first], end=runs.ends[last])
        extra += [Span(runs.starts[g], runs.ends[g], "[redacted]", CARD_DETAIL)
                  for g in (*range(lo, first), *range(last + 1, hi + 1)) if free(g)]
    return spans + extra


def _union(runs: _Runs, first: Any, last: Any) -> list[Span]:
    """Every window masked, overlapping ones as one (crafted input with many windows)."""
    import numpy as np

    if not len(first):
        return []
    starts = np.asarray(runs.starts, dtype=np.int64)[first]
    ends = np.asarray(runs.ends, dtype=np.int64)[last]
    order = np.lexsort((-ends, starts))
    starts, ends, first, last = starts[order], ends[order], first[order], last[order]
    reach = np.maximum.accumulate(ends)
    new = np.ones(len(starts), dtype=bool)
    new[1:] = starts[1:] >= reach[:-1]
    heads = np.flatnonzero(new)
    stops = np.append(heads[1:], len(starts))
    spans = []
    for head, stop in zip(heads.tolist(), stops.tolist(), strict=True):
        if stop - head == 1:
            digits = "".join(runs.digits[int(first[head]) : int(last[head]) + 1])
            label = f"[card ****{digits[-4:]}]"
        else:
            label = "[card numbers]"
        spans.append(Span(int(starts[head]), int(reach[stop - 1]), label, CARD))
    return spans
