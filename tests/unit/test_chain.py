"""The case log's hash chain: an intact chain verifies; any change is found at the right seq."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from shared.caselog.chain import (
    GENESIS_HASH,
    ChainedFields,
    canonical_json,
    check_chain,
    row_hash,
)

Row = tuple[ChainedFields, str, str]
CASE = "case-7"
TEXT = st.text(max_size=20)
TIMES = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                     timezones=st.just(UTC))
# The fields the hash covers and that a tamperer could rewrite (seq is checked on its own).
CONTENT_FIELDS = ["case_id", "event_id", "type", "source", "time", "trace_id", "data"]


@st.composite
def contents(draw: st.DrawFn) -> dict[str, object]:
    return {
        "event_id": draw(TEXT), "type": draw(TEXT), "source": draw(TEXT), "time": draw(TIMES),
        "trace_id": draw(st.none() | st.text(min_size=1, max_size=32)),
        "data": canonical_json(draw(st.dictionaries(TEXT, st.integers() | TEXT, max_size=3))),
    }


def chain(rows: list[dict[str, object]], seqs: list[int] | None = None) -> list[Row]:
    """Rows as the writer stores them: fields, prev_hash, hash."""
    out: list[Row] = []
    prev = GENESIS_HASH
    for index, content in enumerate(rows):
        seq = seqs[index] if seqs else index + 1
        fields = ChainedFields(case_id=CASE, seq=seq, **content)  # type: ignore[arg-type]
        digest = row_hash(prev, fields)
        out.append((fields, prev, digest))
        prev = digest
    return out


def altered(fields: ChainedFields, name: str, data: st.DataObject) -> ChainedFields:
    old = getattr(fields, name)
    if name == "time":
        new: object = old + timedelta(microseconds=data.draw(st.integers(1, 10**9)))
    elif name == "trace_id":  # None and "" both mean "no trace": change it to a real difference
        new = data.draw(st.text(min_size=1, max_size=32).filter(lambda v: v != (old or "")))
    else:
        new = data.draw(st.text(max_size=20).filter(lambda v: v != old))
    return dataclasses.replace(fields, **{name: new})  # type: ignore[arg-type]


ROWS = st.lists(contents(), min_size=1, max_size=8)


@given(rows=ROWS)
def test_an_intact_chain_verifies(rows: list[dict[str, object]]) -> None:
    assert check_chain(chain(rows)) is None
    assert check_chain([]) is None


@given(rows=ROWS, data=st.data(), name=st.sampled_from(CONTENT_FIELDS))
def test_altering_any_field_of_any_row_is_found_at_that_row(
    rows: list[dict[str, object]], data: st.DataObject, name: str
) -> None:
    stored = chain(rows)
    index = data.draw(st.integers(0, len(stored) - 1))
    fields, prev, digest = stored[index]
    stored[index] = (altered(fields, name, data), prev, digest)
    broken = check_chain(stored)
    assert broken is not None
    assert (broken.seq, broken.why) == (index + 1, "hash does not match row contents")


@given(rows=ROWS, data=st.data(), which=st.sampled_from(["prev_hash", "hash"]))
def test_altering_a_stored_hash_is_found(
    rows: list[dict[str, object]], data: st.DataObject, which: str
) -> None:
    stored = chain(rows)
    index = data.draw(st.integers(0, len(stored) - 1))
    fields, prev, digest = stored[index]
    forged = data.draw(st.text("0123456789abcdef", min_size=64, max_size=64))
    if which == "prev_hash":
        stored[index] = (fields, forged, digest)
        expected = "prev_hash does not match previous row"
    else:
        stored[index] = (fields, prev, forged)
        expected = "hash does not match row contents"
    broken = check_chain(stored)
    if forged == (prev if which == "prev_hash" else digest):
        assert broken is None
    else:
        assert broken is not None and (broken.seq, broken.why) == (index + 1, expected)


@given(rows=st.lists(contents(), min_size=2, max_size=8), data=st.data())
def test_reordering_rows_is_found_at_the_first_displaced_row(
    rows: list[dict[str, object]], data: st.DataObject
) -> None:
    stored = chain(rows)
    first = data.draw(st.integers(0, len(stored) - 2))
    second = data.draw(st.integers(first + 1, len(stored) - 1))
    stored[first], stored[second] = stored[second], stored[first]
    broken = check_chain(stored)
    assert broken is not None
    assert broken.seq == second + 1  # the row now at position `first` carries seq second+1
    assert broken.why == f"sequence gap: expected {first + 1}"


@given(rows=st.lists(contents(), min_size=2, max_size=8), data=st.data())
def test_deleting_a_row_is_found_at_the_next_row(
    rows: list[dict[str, object]], data: st.DataObject
) -> None:
    stored = chain(rows)
    index = data.draw(st.integers(0, len(stored) - 2))
    del stored[index]
    broken = check_chain(stored)
    assert broken is not None
    assert (broken.seq, broken.why) == (index + 2, f"sequence gap: expected {index + 1}")


@given(rows=st.lists(contents(), min_size=2, max_size=8), data=st.data())
def test_deleting_a_row_and_renumbering_is_found_by_the_link(
    rows: list[dict[str, object]], data: st.DataObject
) -> None:
    stored = chain(rows)
    index = data.draw(st.integers(0, len(stored) - 2))
    del stored[index]
    renumbered = [(dataclasses.replace(f, seq=i), prev, digest)
                  for i, (f, prev, digest) in enumerate(stored, start=1)]
    broken = check_chain(renumbered)
    assert broken is not None and broken.seq == index + 1


@given(rows=ROWS)
def test_truncating_the_tail_is_invisible_to_the_chain_alone(
    rows: list[dict[str, object]]
) -> None:
    """Documented limit: the last row's hash must be anchored elsewhere to catch this."""
    assert check_chain(chain(rows)[:-1]) is None


@given(rows=st.lists(contents(), min_size=2, max_size=8), data=st.data())
def test_a_sequence_gap_is_found_even_when_the_hashes_agree(
    rows: list[dict[str, object]], data: st.DataObject
) -> None:
    gap_at = data.draw(st.integers(1, len(rows) - 1))
    seqs = [i + 1 if i < gap_at else i + 2 for i in range(len(rows))]
    broken = check_chain(chain(rows, seqs))
    assert broken is not None
    assert (broken.seq, broken.why) == (gap_at + 2, f"sequence gap: expected {gap_at + 1}")


def test_the_hash_covers_the_instant_not_its_time_zone() -> None:
    utc = ChainedFields(CASE, 1, "e", "t", "s", datetime(2025, 1, 1, 12, tzinfo=UTC), None, "{}")
    local = dataclasses.replace(
        utc, time=datetime(2025, 1, 1, 13, tzinfo=timezone(timedelta(hours=1))))
    assert row_hash(GENESIS_HASH, utc) == row_hash(GENESIS_HASH, local)


@given(left=st.text(max_size=10), right=st.text(max_size=10), cut=st.integers(0, 20))
def test_moving_characters_between_fields_changes_the_hash(
    left: str, right: str, cut: int
) -> None:
    joined = left + right
    moved = (joined[:cut], joined[cut:])
    base = ChainedFields(CASE, 1, "e", left, right, datetime(2025, 1, 1, tzinfo=UTC), None, "{}")
    other = dataclasses.replace(base, type=moved[0], source=moved[1])
    assert (row_hash(GENESIS_HASH, base) == row_hash(GENESIS_HASH, other)) == \
        ((left, right) == moved)


def test_canonical_json_is_one_serialisation() -> None:
    assert canonical_json({"b": 1, "a": "é"}) == '{"a":"é","b":1}'
