"""The case log's hash chain: an intact chain verifies; any change is found at the right seq.

Version 1 (rows written before migration 0040) first, then version 2 with its MACs and the
test vectors other implementations check against."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import struct
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from hypothesis import given
from hypothesis import strategies as st

from shared.caselog.chain import (
    GENESIS_HASH,
    HASH_V2,
    ChainedFields,
    RowMac,
    canonical_json,
    check_chain,
    row_hash,
    row_mac,
)
from shared.caselog.checkpoint import body_digest, read_checkpoints, signed_record
from shared.caselog.jcs import canonicalize
from shared.caselog.keys import (
    CheckpointKeys,
    KeyProblem,
    RowKeyring,
    b64decode,
    public_key_id,
)
from shared.caselog.store import LogRow
from shared.caselog.verify import check_rows

Row = tuple[ChainedFields, str, str]
CASE = "case-7"
TEXT = st.text(max_size=20)
# hypothesis takes naive bounds and attaches the zones itself
TIMES = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),  # noqa: DTZ001
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


# -- version 2: every column, byte length prefixes, a MAC per row -----------------------------

VECTORS = json.loads((Path(__file__).parent.parent / "fixtures" / "caselog" /
                      "chain_v2_vectors.json").read_text("utf-8"))


def spec_field(value: str | None) -> bytes:
    """The framing as docs/architecture.md states it, written again from the text."""
    if value is None:
        return b"\x00"
    raw = value.encode("utf-8")
    return b"\x01" + struct.pack(">Q", len(raw)) + raw


@pytest.mark.parametrize("row", VECTORS["rows"], ids=lambda r: f"{r['case_id']}:{r['seq']}")
def test_the_v2_vectors(row: dict[str, Any]) -> None:
    names = ["prev_hash", "case_id", "seq", "event_id", "type", "source", "time", "recorded_at",
             "trace_id", "data", "key_id"]
    material = spec_field("switchboard/case_log/v2") + b"".join(
        spec_field(None if row[n] is None else str(row[n])) for n in names)
    assert material.hex() == row["hash_input_hex"]
    assert hashlib.sha256(material).hexdigest() == row["hash"]
    assert canonicalize(row["data_value"]) == row["data"]
    fields = ChainedFields(
        row["case_id"], row["seq"], row["event_id"], row["type"], row["source"],
        datetime.fromisoformat(row["time"]), row["trace_id"], row["data"],
        datetime.fromisoformat(row["recorded_at"]), row["key_id"])
    assert row_hash(row["prev_hash"], fields, HASH_V2) == row["hash"]
    key = bytes.fromhex(VECTORS["row_key_hex"])
    mac_input = spec_field("switchboard/case_log/mac/v2") + spec_field(row["hash"])
    assert mac_input.hex() == row["mac_input_hex"]
    assert hmac.new(key, mac_input, "sha256").hexdigest() == row["mac"]
    assert row_mac(key, row["hash"]) == RowMac(key)(row["hash"]) == row["mac"]


def test_the_checkpoint_vector_verifies_and_is_reproducible(tmp_path: Path) -> None:
    public = Ed25519PublicKey.from_public_bytes(b64decode(VECTORS["checkpoint_public_key_b64url"]))
    record = json.loads(VECTORS["checkpoint_line"])
    public.verify(b64decode(record["signature"]),
                  canonicalize(record["checkpoint"]).encode("utf-8"))
    path = tmp_path / "checkpoints.jsonl"
    path.write_text(VECTORS["checkpoint_line"] + "\n")
    replayed = read_checkpoints(path, CheckpointKeys(None, {public_key_id(public): public}))
    assert replayed.problems == []
    assert replayed.heads == {r["case_id"]: (r["seq"], r["hash"]) for r in VECTORS["rows"]}
    assert body_digest(record["checkpoint"]) == VECTORS["checkpoint_body_sha256"]
    private = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(VECTORS["checkpoint_seed_hex"]))
    keys = CheckpointKeys(private, {public_key_id(public): public})
    assert signed_record(record["checkpoint"], keys) == VECTORS["checkpoint_line"]


V2_FIELDS = [*CONTENT_FIELDS, "recorded_at", "key_id"]
KEY = b"k" * 32
KEYRING = RowKeyring(keys={"src": KEY, "other": b"o" * 32})


def keyed_chain(rows: list[dict[str, object]]) -> list[LogRow]:
    """Rows as the version 2 writer stores them, source `src`, with their MACs."""
    out: list[LogRow] = []
    prev = GENESIS_HASH
    for index, content in enumerate(rows, start=1):
        fields = ChainedFields(case_id=CASE, seq=index, **{  # type: ignore[arg-type]
            **content, "source": "src", "key_id": "src",
            "recorded_at": content["time"]})
        digest = row_hash(prev, fields, HASH_V2)
        out.append(LogRow(**vars(fields), prev_hash=prev, hash=digest, hash_version=HASH_V2,
                          mac=row_mac(KEY, digest)))
        prev = digest
    return out


@given(rows=ROWS)
def test_an_intact_keyed_chain_verifies(rows: list[dict[str, object]]) -> None:
    assert check_rows(keyed_chain(rows), KEYRING) == []


@given(rows=ROWS, data=st.data(), name=st.sampled_from(V2_FIELDS))
def test_altering_any_column_of_a_v2_row_is_found_at_that_row(
    rows: list[dict[str, object]], data: st.DataObject, name: str
) -> None:
    stored = keyed_chain(rows)
    index = data.draw(st.integers(0, len(stored) - 1))
    row = stored[index]
    if name == "recorded_at":
        new: object = row.time + timedelta(microseconds=data.draw(st.integers(1, 10**9)))
    elif name == "trace_id":  # version 2 tells NULL from "" and from any text
        new = data.draw(st.one_of(st.none(), st.text(max_size=32)).filter(
            lambda v: v != row.trace_id))
    elif name == "key_id":
        new = "src#2"
    else:
        new = getattr(altered(row, name, data), name)
    stored[index] = dataclasses.replace(row, **{name: new})  # type: ignore[arg-type]
    found = check_rows(stored, KEYRING)
    assert found and found[0].seq == index + 1
    assert found[0].why == "hash does not match row contents"


@given(rows=ROWS, data=st.data())
def test_a_recomputed_chain_is_found_by_the_macs(
    rows: list[dict[str, object]], data: st.DataObject
) -> None:
    """Rewrite a row and recompute every hash from it on: the links hold, the MACs do not."""
    stored = keyed_chain(rows)
    index = data.draw(st.integers(0, len(stored) - 1))
    prev = stored[index - 1].hash if index else GENESIS_HASH
    for i in range(index, len(stored)):
        row = stored[i]
        changed = dataclasses.replace(row, data=row.data + " " if i == index else row.data,
                                      prev_hash=prev)
        stored[i] = dataclasses.replace(changed, hash=row_hash(prev, changed, HASH_V2))
        prev = stored[i].hash
    found = check_rows(stored, KEYRING)
    assert [f.seq for f in found] == list(range(index + 1, len(stored) + 1))
    assert all(f.why.startswith("MAC does not verify") for f in found)


def test_forged_rows_are_named() -> None:
    times = datetime(2026, 1, 1, tzinfo=UTC)
    base = keyed_chain([{"event_id": "e", "type": "t", "source": "src", "time": times,
                         "trace_id": None, "data": "{}"}] * 2)
    no_mac = dataclasses.replace(base[1], mac=None)
    other_key = dataclasses.replace(base[1], key_id="other")
    other_key = dataclasses.replace(other_key, hash=row_hash(base[0].hash, other_key, HASH_V2))
    other_key = dataclasses.replace(other_key, mac=row_mac(b"o" * 32, other_key.hash))
    unknown = dataclasses.replace(base[1], key_id="src#9")
    unknown = dataclasses.replace(unknown, hash=row_hash(base[0].hash, unknown, HASH_V2))
    downgraded = dataclasses.replace(base[1], hash_version=1)
    downgraded = dataclasses.replace(downgraded, hash=row_hash(base[0].hash, downgraded))
    expected = {
        no_mac: "no MAC: written without a service's row key (forged)",
        other_key: "MAC key 'other' is not a key of source 'src' (forged)",
        unknown: "MAC key 'src#9' is unknown here",
        downgraded: "unkeyed version 1 row after keyed rows",
    }
    for row, why in expected.items():
        found = check_rows([base[0], row], KEYRING)
        assert len(found) == 1 and found[0].seq == 2 and found[0].why.startswith(why), found


def test_the_signing_key_of_a_source_is_its_last_listed_and_all_verify() -> None:
    ring = RowKeyring(keys={"a": b"1" * 32, "a#2": b"2" * 32, "b": b"3" * 32})
    assert ring.signing_key("a") == ("a#2", b"2" * 32)
    assert ring.verifying_key("a") == b"1" * 32
    with pytest.raises(KeyProblem):
        ring.signing_key("c")
    seeded = RowKeyring(seed=b"s" * 32)
    key_id, key = seeded.signing_key("switchboard/intake")
    assert key_id == "switchboard/intake#local" and seeded.verifying_key(key_id) == key
    assert seeded.signing_key("switchboard/router")[1] != key
