"""The hash chain of a case: pure functions, shared by the writer and the verifier."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

GENESIS_HASH = "0" * 64


def canonical_json(value: Any) -> str:
    """One serialisation per value: sorted keys, no spaces, UTF-8 kept as is."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class ChainedFields:
    """The fields of a log row that the hash covers."""

    case_id: str
    seq: int
    event_id: str
    type: str
    source: str
    time: datetime
    trace_id: str | None
    data: str


def row_hash(prev_hash: str, row: ChainedFields) -> str:
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


@dataclass(frozen=True)
class BrokenLink:
    case_id: str
    seq: int
    why: str


def check_chain(rows: list[tuple[ChainedFields, str, str]]) -> BrokenLink | None:
    """Check one case's rows (fields, prev_hash, hash), ordered by seq; return the first break."""
    expected_prev = GENESIS_HASH
    for index, (fields, prev_hash, stored_hash) in enumerate(rows, start=1):
        if fields.seq != index:
            return BrokenLink(fields.case_id, fields.seq, f"sequence gap: expected {index}")
        if prev_hash != expected_prev:
            return BrokenLink(fields.case_id, fields.seq, "prev_hash does not match previous row")
        if row_hash(prev_hash, fields) != stored_hash:
            return BrokenLink(fields.case_id, fields.seq, "hash does not match row contents")
        expected_prev = stored_hash
    return None
