"""Appending to and reading the case log (asyncpg)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from shared.caselog.chain import (
    GENESIS_HASH,
    BrokenLink,
    ChainedFields,
    canonical_json,
    check_chain,
    row_hash,
)
from shared.events import CaseEvent


def event_data(event: CaseEvent) -> str:
    return canonical_json(event.data.model_dump(mode="json"))


async def append_events(
    conn: asyncpg.Connection, events: Sequence[CaseEvent] | Sequence[tuple[CaseEvent, str | None]],
    *, source: str, trace_id: str | None = None,
) -> list[CaseEvent]:
    """Append events in the caller's transaction; return the ones that were not logged before.

    `events` are events (all in `trace_id`) or (event, its trace id) pairs. Per-case advisory
    locks, taken in a fixed order, serialise writers of the same case so the sequence stays
    gap-free and the chain linear; a repeated event id is skipped, not an error.
    """
    if not events:
        return []
    traced = [e if isinstance(e, tuple) else (e, trace_id) for e in events]
    trace_of = {e.event_id: t for e, t in reversed(traced)}
    events = [e for e, _ in traced]
    case_ids = sorted({e.case_id for e in events})
    # One round trip for all the locks, taken in sorted order so two writers cannot deadlock.
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended(c, 7))"
        " FROM unnest($1::text[]) WITH ORDINALITY AS u(c, n) ORDER BY n",
        case_ids,
    )
    known = {
        row["event_id"]
        for row in await conn.fetch(
            "SELECT event_id FROM case_log WHERE event_id = ANY($1::uuid[])",
            [e.event_id for e in events],
        )
    }
    fresh = _first_of_each(e for e in events if e.event_id not in known)
    heads = await _heads(conn, case_ids)
    rows = []
    for event in fresh:
        seq, prev_hash = heads.get(event.case_id, (0, GENESIS_HASH))
        fields = ChainedFields(
            case_id=event.case_id, seq=seq + 1, event_id=str(event.event_id), type=event.type,
            source=source, time=event.time, trace_id=trace_of[event.event_id],
            data=event_data(event),
        )
        digest = row_hash(prev_hash, fields)
        heads[event.case_id] = (seq + 1, digest)
        rows.append((fields.case_id, fields.seq, event.event_id, fields.type, source,
                     fields.time, fields.trace_id, fields.data, prev_hash, digest))
    if rows:
        await conn.copy_records_to_table("case_log", records=rows, columns=_COLUMNS)
    return fresh


_COLUMNS = ("case_id", "seq", "event_id", "type", "source", "time", "trace_id", "data",
            "prev_hash", "hash")


def _first_of_each(events: Any) -> list[CaseEvent]:
    seen: set[uuid.UUID] = set()
    out = []
    for event in events:
        if event.event_id not in seen:
            seen.add(event.event_id)
            out.append(event)
    return out


async def _heads(conn: asyncpg.Connection, case_ids: list[str]) -> dict[str, tuple[int, str]]:
    """The last (seq, hash) of each case that has rows."""
    rows = await conn.fetch(
        # One backward index probe per case, however long its history.
        "SELECT c AS case_id, h.seq, h.hash FROM unnest($1::text[]) AS c CROSS JOIN LATERAL"
        " (SELECT seq, hash FROM case_log WHERE case_id = c ORDER BY seq DESC LIMIT 1) AS h",
        case_ids,
    )
    return {r["case_id"]: (r["seq"], r["hash"]) for r in rows}


@dataclass(frozen=True)
class LogRow(ChainedFields):
    """A row as stored: the chained fields plus the links of the chain."""

    prev_hash: str
    hash: str

    @property
    def payload(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.data)
        return result


_ROW_SQL = (
    "SELECT case_id, seq, event_id::text AS event_id, type, source, time, trace_id, data,"
    " prev_hash, hash FROM case_log"
)


async def read_case(conn: asyncpg.Connection, case_id: str) -> list[LogRow]:
    rows = await conn.fetch(f"{_ROW_SQL} WHERE case_id = $1 ORDER BY seq", case_id)
    return [LogRow(**dict(r)) for r in rows]


async def verify_case(conn: asyncpg.Connection, case_id: str) -> BrokenLink | None:
    rows = await read_case(conn, case_id)
    return check_chain([(r, r.prev_hash, r.hash) for r in rows])


async def verify_all(conn: asyncpg.Connection) -> tuple[int, BrokenLink | None]:
    """Verify every case's chain; return the number of cases checked and the first break."""
    case_ids = [r["case_id"] for r in await conn.fetch(
        "SELECT DISTINCT case_id FROM case_log ORDER BY case_id")]
    for count, case_id in enumerate(case_ids, start=1):
        broken = await verify_case(conn, case_id)
        if broken is not None:
            return count, broken
    return len(case_ids), None
