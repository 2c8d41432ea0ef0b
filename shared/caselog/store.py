"""Appending to and reading the case log (asyncpg)."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncGenerator, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from shared.caselog.chain import (
    CURRENT_HASH_VERSION,
    GENESIS_HASH,
    BrokenLink,
    ChainedFields,
    RowMac,
    field,
    hash_v2,
    utc_text,
)
from shared.caselog.jcs import canonicalize
from shared.caselog.keys import RowKeyring, row_keyring
from shared.events import CaseEvent


def event_data(event: CaseEvent) -> str:
    """The stored (and hashed) text of an event's data: RFC 8785 canonical JSON."""
    return canonicalize(event.data.model_dump(mode="json"))


async def append_events(
    conn: asyncpg.Connection, events: Sequence[CaseEvent] | Sequence[tuple[CaseEvent, str | None]],
    *, source: str, trace_id: str | None = None, texts: dict[uuid.UUID, str] | None = None,
) -> list[CaseEvent]:
    """Append events in the caller's transaction; return the ones that were not logged before.

    `events` are events (all in `trace_id`) or (event, its trace id) pairs. Per-case advisory
    locks, taken in a fixed order, serialise writers of the same case so the sequence stays
    gap-free and the chain linear; a repeated event id is skipped, not an error. Rows are
    written with hash version 2 and a MAC keyed with `source`'s row key (shared.caselog.keys).
    `texts`, if given, receives each appended event's stored `data` (so that what is published
    is the logged text, serialised once).
    """
    if not events:
        return []
    key_id, key = row_keyring().signing_key(source)  # before any round trip: fail fast
    traced = [e if isinstance(e, tuple) else (e, trace_id) for e in events]
    trace_of = {e.event_id: t for e, t in reversed(traced)}
    events = [e for e, _ in traced]
    case_ids = sorted({e.case_id for e in events})
    await lock_cases(conn, case_ids)
    known, heads = await _known_and_heads(conn, [e.event_id for e in events], case_ids)
    fresh = _first_of_each(e for e in events if e.event_id not in known)
    # The writer stamps recorded_at (one instant per batch), so the hash covers it.
    recorded_at = datetime.now(UTC)
    recorded_field, source_field, key_field = field(utc_text(recorded_at)), field(source), \
        field(key_id)
    mac = RowMac(key)
    case_fields: dict[str, bytes] = {}
    rows = []
    for event in fresh:
        case_id = event.case_id
        seq, prev_hash = heads.get(case_id, (0, GENESIS_HASH))
        seq += 1
        case_field = case_fields.get(case_id)
        if case_field is None:
            case_field = case_fields[case_id] = field(case_id)
        data = event_data(event)
        if texts is not None:
            texts[event.event_id] = data
        trace = trace_of[event.event_id]
        digest = hash_v2(prev_hash, case_field, seq, str(event.event_id), event.type,
                         source_field, utc_text(event.time), recorded_field, trace, data,
                         key_field)
        heads[case_id] = (seq, digest)
        rows.append((case_id, seq, event.event_id, event.type, source, event.time, recorded_at,
                     trace, data, prev_hash, digest, CURRENT_HASH_VERSION, key_id,
                     mac(digest)))
    if rows:
        await conn.copy_records_to_table("case_log", records=rows, columns=_COLUMNS)
    return fresh


async def lock_cases(conn: asyncpg.Connection, case_ids: Iterable[str]) -> None:
    """Take the log locks of these cases until the transaction ends: one round trip, in sorted
    order, so that two writers cannot deadlock.

    That holds only if a transaction takes all the cases it will append to at once. One that
    appends several times (a timer firing many cases' clocks, each in its own trace) calls
    this first with every case it may append to; the appends then take locks it holds already
    (transaction-scoped advisory locks are re-entrant). Otherwise it would lock in the order of
    its appends, and a batch locking the same cases in sorted order meanwhile deadlocks with
    it: PostgreSQL aborts one of them (seen in a 20,000-contact run, where SLA breaches are
    fired by the hundred).
    """
    ordered = sorted(set(case_ids))
    if ordered:
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(c, 7))"
            " FROM unnest($1::text[]) WITH ORDINALITY AS u(c, n) ORDER BY n", ordered)


_COLUMNS = ("case_id", "seq", "event_id", "type", "source", "time", "recorded_at", "trace_id",
            "data", "prev_hash", "hash", "hash_version", "key_id", "mac")


async def any_logged(conn: asyncpg.Connection, event_ids: list[uuid.UUID]) -> bool:
    """Whether any of these events is in the log."""
    return bool(await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM unnest($1::uuid[]) AS u(id) CROSS JOIN LATERAL"
        " (SELECT 1 FROM case_log WHERE event_id = u.id LIMIT 1) AS hit)", event_ids))


def _first_of_each(events: Any) -> list[CaseEvent]:
    seen: set[uuid.UUID] = set()
    out = []
    for event in events:
        if event.event_id not in seen:
            seen.add(event.event_id)
            out.append(event)
    return out


async def _known_and_heads(conn: asyncpg.Connection, event_ids: list[uuid.UUID],
                           case_ids: list[str]
                           ) -> tuple[set[uuid.UUID], dict[str, tuple[int, str]]]:
    """Which of these events the log already holds, and the last (seq, hash) of each case that
    has rows: one round trip, after the locks (a read in the statement that takes them could
    see a head from before the lock was granted)."""
    rows = await conn.fetch(
        # One index probe per id, whatever the planner thinks of the array: as
        # `event_id = ANY($1)` it chose sequential scans of the whole log for a batch's ids on
        # a young log (4,636 of 8,406 look-ups in a bench run, 40 % of PostgreSQL's time, the
        # longer the log the slower). One backward index probe per case, however long its
        # history.
        "SELECT u.id AS event_id, NULL::text AS case_id, NULL::bigint AS seq, NULL::text AS hash"
        " FROM unnest($1::uuid[]) AS u(id) CROSS JOIN LATERAL"
        " (SELECT 1 FROM case_log WHERE event_id = u.id LIMIT 1) AS hit"
        " UNION ALL"
        " SELECT NULL, c, h.seq, h.hash FROM unnest($2::text[]) AS c CROSS JOIN LATERAL"
        " (SELECT seq, hash FROM case_log WHERE case_id = c ORDER BY seq DESC LIMIT 1) AS h",
        event_ids, case_ids,
    )
    known = {r["event_id"] for r in rows if r["event_id"] is not None}
    heads = {r["case_id"]: (r["seq"], r["hash"]) for r in rows if r["case_id"] is not None}
    return known, heads


@dataclass(frozen=True, kw_only=True)
class LogRow(ChainedFields):
    """A row as stored: the chained fields plus the links of the chain and its MAC."""

    prev_hash: str
    hash: str
    hash_version: int = 1
    mac: str | None = None

    @property
    def payload(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.data)
        return result


_ROW_SQL = (
    "SELECT case_id, seq, event_id::text AS event_id, type, source, time, recorded_at, trace_id,"
    " data, prev_hash, hash, hash_version, key_id, mac FROM case_log"
)


async def read_case(conn: asyncpg.Connection, case_id: str) -> list[LogRow]:
    rows = await conn.fetch(f"{_ROW_SQL} WHERE case_id = $1 ORDER BY seq", case_id)
    return [LogRow(**dict(r)) for r in rows]


def latest_of_sql(case_id: str, types: str) -> str:
    """`latest_of` as a scalar subquery, for a service that reads it in the same round trip as
    its own tables; `case_id` and `types` are SQL expressions (parameters: text, text[])."""
    return (f"(SELECT type FROM case_log WHERE case_id = {case_id} AND type = ANY({types})"
            " ORDER BY seq DESC LIMIT 1)")


def recorded_since_sql(case_id: str, type_: str, since: str) -> str:
    """Whether the case's log has an event of this type that happened at `since` or later (by
    the event's own time), as a boolean SQL expression (`case_id`, `type_`, `since`: SQL
    expressions): e.g. an agent's reply since a chat contact began."""
    return (f"EXISTS (SELECT 1 FROM case_log WHERE case_id = {case_id} AND type = {type_}"
            f" AND time >= {since})")


async def latest_of(conn: asyncpg.Connection, case_id: str, types: Sequence[str]) -> str | None:
    """Which of these event types the case's log recorded last, or None if none of them: e.g.
    whether a case is solved now (`case.solved` after the last `case.reopened`)."""
    last = await conn.fetchval(f"SELECT {latest_of_sql('$1', '$2::text[]')}", case_id,
                               list(types))
    return None if last is None else str(last)


async def read_cases(
    conn: asyncpg.Connection, *, batch: int = 2_000
) -> AsyncGenerator[list[LogRow], None]:
    """Every case's rows, case by case in case id order, from one snapshot (a cursor in a
    repeatable-read transaction of its own)."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        current: list[LogRow] = []
        async for r in conn.cursor(f"{_ROW_SQL} ORDER BY case_id, seq", prefetch=batch):
            row = LogRow(**dict(r))
            if current and current[0].case_id != row.case_id:
                yield current
                current = []
            current.append(row)
        if current:
            yield current


async def verify_case(
    conn: asyncpg.Connection, case_id: str, keyring: RowKeyring | None = None
) -> BrokenLink | None:
    """The first problem of one case's rows (chain and row MACs), or None."""
    from shared.caselog.verify import check_rows

    found = check_rows(await read_case(conn, case_id), keyring or row_keyring())
    return BrokenLink(case_id, found[0].seq or 0, found[0].why) if found else None


async def verify_all(
    conn: asyncpg.Connection, keyring: RowKeyring | None = None
) -> tuple[int, BrokenLink | None]:
    """Verify every case's chain and MACs; return the number of cases checked and the first
    break (checkpoints: shared.caselog.verify.verify_log)."""
    from shared.caselog.verify import check_rows

    count = 0
    async with contextlib.aclosing(read_cases(conn)) as cases:
        async for rows in cases:
            count += 1
            found = check_rows(rows, keyring or row_keyring())
            if found:
                return count, BrokenLink(rows[0].case_id, found[0].seq or 0, found[0].why)
    return count, None
