"""The hash chain of a case: pure functions, shared by the writer and the verifier.

Two versions live side by side (column `hash_version`); a row is checked with the scheme it was
written with, so logs written before version 2 keep verifying.

Version 2 (the writer's), specified in docs/architecture.md ("Row hash, version 2") so that
another language can reproduce it; tests/fixtures/caselog/chain_v2_vectors.json has vectors:

    field(None)  = 0x00
    field(text)  = 0x01 || u64be(len(utf8(text))) || utf8(text)
    hash = hex(SHA-256(field("switchboard/case_log/v2") || field(prev_hash) || field(case_id)
                       || field(seq) || field(event_id) || field(type) || field(source)
                       || field(time) || field(recorded_at) || field(trace_id) || field(data)
                       || field(key_id)))
    mac  = hex(HMAC-SHA256(row key, field("switchboard/case_log/mac/v2") || field(hash)))

seq in decimal; event_id as the lowercase hyphenated UUID; time and recorded_at in UTC as
`YYYY-MM-DDTHH:MM:SS.ffffffZ`; data is the stored text (RFC 8785 canonical JSON when written);
trace_id may be NULL. Every stored column is covered: `payload` is generated from `data`,
`hash_version` by the domain tag, `mac` is checked against the hash.

Version 1 (rows written before migration 0040): unkeyed SHA-256 over the parts prefixed by
their length in code points, without recorded_at; `data` was Python's `json.dumps` with sorted
keys.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

GENESIS_HASH = "0" * 64
HASH_V1 = 1
HASH_V2 = 2
CURRENT_HASH_VERSION = HASH_V2

_V2_TAG = b"\x01" + (23).to_bytes(8, "big") + b"switchboard/case_log/v2"
_MAC_TAG = b"\x01" + (27).to_bytes(8, "big") + b"switchboard/case_log/mac/v2"
_NULL = b"\x00"


def canonical_json(value: Any) -> str:
    """Version 1's serialisation (sorted keys, no spaces, UTF-8 kept as is).

    Still used for the messages the services publish outside the log (offers, notifications,
    webhook sinks); case events are published as the log stores them, RFC 8785 text
    (shared.caselog.jcs), which version 2 hashes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def field(value: str | None) -> bytes:
    """One length-prefixed field of version 2's hash input."""
    if value is None:
        return _NULL
    raw = value.encode("utf-8")
    return b"\x01" + len(raw).to_bytes(8, "big") + raw


def utc_text(moment: datetime) -> str:
    """An instant as version 2 hashes it: UTC, microseconds, `Z`."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")[:-6] + "Z"


@dataclass(frozen=True)
class ChainedFields:
    """The fields of a log row that the hash covers (recorded_at and key_id: version 2 only)."""

    case_id: str
    seq: int
    event_id: str
    type: str
    source: str
    time: datetime
    trace_id: str | None
    data: str
    recorded_at: datetime | None = None
    key_id: str | None = None


def row_hash(prev_hash: str, row: ChainedFields, version: int = HASH_V1) -> str:
    if version == HASH_V2:
        return row_hash_v2(prev_hash, row)
    if version != HASH_V1:
        raise ValueError(f"unknown hash version {version}")
    parts = [
        prev_hash,
        row.case_id,
        str(row.seq),
        row.event_id,
        row.type,
        row.source,
        row.time.astimezone(UTC).isoformat(timespec="microseconds"),
        row.trace_id or "",
        row.data,
    ]
    # Length-prefix each part so that no shift of bytes between fields yields the same input.
    material = "".join(f"{len(p)}:{p}" for p in parts)
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


def row_hash_v2(prev_hash: str, row: ChainedFields) -> str:
    if row.recorded_at is None:
        raise ValueError("a version 2 row has a recorded_at")
    return hash_v2(
        prev_hash, field(row.case_id), row.seq, row.event_id, row.type, field(row.source),
        utc_text(row.time), field(utc_text(row.recorded_at)), row.trace_id, row.data,
        field(row.key_id))


def hash_v2(
    prev_hash: str, case_field: bytes, seq: int, event_id: str, type_: str, source_field: bytes,
    time_text: str, recorded_field: bytes, trace_id: str | None, data: str, key_field: bytes,
) -> str:
    """Version 2's hash, with the fields a writer repeats across a batch already framed
    (one join and one SHA-256 call: this runs for every row the services log)."""
    raw = [prev_hash.encode(), str(seq).encode(), event_id.encode(), type_.encode(),
           time_text.encode(), data.encode("utf-8")]
    if trace_id is None:
        trace = _NULL
    else:
        encoded = trace_id.encode("utf-8")
        trace = _prefix(1, len(encoded)) + encoded
    p = _prefix
    return hashlib.sha256(b"".join((
        _V2_TAG, p(1, len(raw[0])), raw[0], case_field, p(1, len(raw[1])), raw[1],
        p(1, len(raw[2])), raw[2], p(1, len(raw[3])), raw[3], source_field,
        p(1, len(raw[4])), raw[4], recorded_field, trace, p(1, len(raw[5])), raw[5], key_field,
    ))).hexdigest()


_prefix = struct.Struct(">BQ").pack


def row_mac(key: bytes, row_hash_hex: str) -> str:
    return hmac.new(key, _MAC_TAG + field(row_hash_hex), hashlib.sha256).hexdigest()


class RowMac:
    """row_mac() for one key and many rows: the keyed HMAC state is made once and copied."""

    def __init__(self, key: bytes) -> None:
        self._keyed = hmac.new(key, _MAC_TAG, hashlib.sha256)

    def __call__(self, row_hash_hex: str) -> str:
        mac = self._keyed.copy()
        mac.update(field(row_hash_hex))
        return mac.hexdigest()


def mac_matches(key: bytes, row_hash_hex: str, mac: str) -> bool:
    return hmac.compare_digest(row_mac(key, row_hash_hex), mac)


@dataclass(frozen=True)
class BrokenLink:
    case_id: str
    seq: int
    why: str


def check_chain(
    rows: list[tuple[ChainedFields, str, str]], versions: list[int] | None = None
) -> BrokenLink | None:
    """Check one case's rows (fields, prev_hash, hash), ordered by seq; return the first break.

    `versions` gives each row's hash version (default: all version 1)."""
    expected_prev = GENESIS_HASH
    for index, (fields, prev_hash, stored_hash) in enumerate(rows, start=1):
        version = versions[index - 1] if versions else HASH_V1
        if fields.seq != index:
            return BrokenLink(fields.case_id, fields.seq, f"sequence gap: expected {index}")
        if prev_hash != expected_prev:
            return BrokenLink(fields.case_id, fields.seq, "prev_hash does not match previous row")
        try:
            recomputed = row_hash(prev_hash, fields, version)
        except ValueError as e:
            return BrokenLink(fields.case_id, fields.seq, str(e))
        if recomputed != stored_hash:
            return BrokenLink(fields.case_id, fields.seq, "hash does not match row contents")
        expected_prev = stored_hash
    return None
