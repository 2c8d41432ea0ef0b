"""`switchboard log verify`: the rows' chains and MACs, checked against the signed checkpoints.

What it finds, and where (docs/architecture.md, "Threat model"):
- a row changed with its hash kept: the row's hash;
- a row changed with the chain recomputed: the row's MAC (the row key is not in the database),
  and the hash a checkpoint signed for that seq;
- a row forged through the services' INSERT grant: no MAC, a bad MAC, a key of another service;
- rows deleted inside a case: the sequence gap and the link;
- the last rows of a case deleted: the head a checkpoint signed is missing;
- a whole case deleted: a case a checkpoint signed has no rows;
- a trigger disabled (and re-enabled), its function replaced, the constraint dropped, the table
  re-created: the guards recorded in consecutive checkpoints, and now, differ;
- unkeyed version 1 rows added after the migration: their count differs from the checkpoints'.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from itertools import pairwise

import asyncpg

from shared.caselog.chain import GENESIS_HASH, HASH_V1, HASH_V2, mac_matches, row_hash
from shared.caselog.checkpoint import Checkpoint, CheckpointLog, database_identity, read_guards
from shared.caselog.keys import RowKeyring, key_source
from shared.caselog.store import LogRow, read_case, read_cases


@dataclass(frozen=True)
class Finding:
    case_id: str | None
    seq: int | None
    why: str

    def __str__(self) -> str:
        if self.case_id is None:
            return f"BROKEN log: {self.why}"
        if self.seq is None:
            return f"BROKEN case {self.case_id}: {self.why}"
        return f"BROKEN case {self.case_id} at seq {self.seq}: {self.why}"


def check_rows(rows: list[LogRow], keyring: RowKeyring) -> list[Finding]:
    """Every problem of one case's rows (ordered by seq): sequence, links, hashes, MACs."""
    out: list[Finding] = []
    expected_seq, expected_prev, keyed = 1, GENESIS_HASH, False
    for row in rows:
        def found(why: str, row: LogRow = row) -> None:
            out.append(Finding(row.case_id, row.seq, why))

        if row.seq != expected_seq:
            found(f"sequence gap: expected {expected_seq}")
        if row.prev_hash != expected_prev:
            found("prev_hash does not match previous row")
        expected_seq, expected_prev = row.seq + 1, row.hash
        if row.hash_version == HASH_V1:
            if keyed:
                found("unkeyed version 1 row after keyed rows: written or rewritten without a "
                      "service's row key")
        elif row.hash_version == HASH_V2:
            keyed = True
        else:
            found(f"unknown hash version {row.hash_version}")
            continue
        if row_hash(row.prev_hash, row, row.hash_version) != row.hash:
            found("hash does not match row contents")
        if row.hash_version == HASH_V2:
            if not row.key_id or not row.mac:
                found("no MAC: written without a service's row key (forged)")
            elif key_source(row.key_id) != row.source:
                found(f"MAC key {row.key_id!r} is not a key of source {row.source!r} (forged)")
            else:
                key = keyring.verifying_key(row.key_id)
                if key is None:
                    found(f"MAC key {row.key_id!r} is unknown here: give `log verify` every "
                          "service's key (CASELOG_ROW_KEYS)")
                elif not mac_matches(key, row.hash, row.mac):
                    found(f"MAC does not verify: row forged or rewritten without the key "
                          f"{row.key_id!r}")
    return out


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    cases: int = 0
    rows: int = 0
    unkeyed_rows: int = 0
    checkpoint: Checkpoint | None = None
    notes: list[str] = field(default_factory=list)


def _when(c: Checkpoint) -> str:
    return f"checkpoint #{c.n} ({c.taken_at})"


def guard_changes(before: dict[str, dict[str, str]], after: dict[str, dict[str, str]]) -> list[str]:
    """What differs between two records of the log's guards, one sentence each."""
    out = []
    for name in sorted(before.keys() | after.keys()):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        if old is None:
            out.append(f"{name} appeared")
        elif new is None:
            out.append(f"{name} was dropped")
        else:
            diffs = ", ".join(f"{k} {old.get(k)} -> {new.get(k)}"
                              for k in sorted(old.keys() | new.keys()) if old.get(k) != new.get(k))
            if name.startswith("trigger ") and old.get("enabled") == new.get("enabled"):
                how = "disabled and re-enabled, or altered"
            elif name.startswith("trigger "):
                how = "enabled state changed"
            else:
                how = "altered"
            out.append(f"{name} changed ({how}: {diffs})")
    return out


async def verify_log(
    conn: asyncpg.Connection, keyring: RowKeyring, checkpoints: CheckpointLog,
    case_id: str | None = None,
) -> Report:
    """Check the whole log (or one case) and the checkpoints; every finding, not just the first."""
    report = Report(checkpoint=checkpoints.last)
    report.findings += [Finding(None, None, p) for p in checkpoints.problems]
    # The guards: between consecutive checkpoints, and since the last one.
    for a, b in pairwise(checkpoints.checkpoints):
        for change in guard_changes(a.body["guards"], b.body["guards"]):
            report.findings.append(Finding(None, None, f"{change} between {_when(a)} and "
                                                       f"{_when(b)}"))
        if a.body["unkeyed_rows"] != b.body["unkeyed_rows"]:
            report.findings.append(Finding(None, None, (
                f"unkeyed version 1 rows went from {a.body['unkeyed_rows']} to "
                f"{b.body['unkeyed_rows']} between {_when(a)} and {_when(b)}")))
    now = await read_guards(conn)
    last = checkpoints.last
    if last is not None and last.body["database"] != (here := await database_identity(conn)):
        report.findings.append(Finding(None, None, (
            f"the checkpoints are of database {last.body['database']}, this is {here}: "
            "wrong checkpoint file, or the database was replaced")))
    if last is not None:
        for change in guard_changes(last.body["guards"], now):
            report.findings.append(Finding(None, None, f"{change} since {_when(last)}"))
    for name, state in sorted(now.items()):
        if name.startswith("trigger ") and state.get("enabled") == "D":
            report.findings.append(Finding(None, None, f"{name} is disabled now"))

    heads = checkpoints.heads
    if case_id is not None:
        rows = await read_case(conn, case_id)
        _check_case(report, case_id, rows, keyring, checkpoints)
        unkeyed_now = int(await conn.fetchval(
            "SELECT count(*) FROM case_log WHERE hash_version < 2"))
    else:
        seen = set()
        async with contextlib.aclosing(read_cases(conn)) as cases:
            async for rows in cases:
                seen.add(rows[0].case_id)
                _check_case(report, rows[0].case_id, rows, keyring, checkpoints)
        for gone in sorted(set(heads) - seen):
            _check_case(report, gone, [], keyring, checkpoints)
        unkeyed_now = report.unkeyed_rows
    if last is not None and unkeyed_now != last.body["unkeyed_rows"]:
        report.findings.append(Finding(None, None, (
            f"{unkeyed_now} unkeyed version 1 rows now, {last.body['unkeyed_rows']} "
            f"at {_when(last)}: rows written or rewritten without a service's key")))
    if last is None:
        report.notes.append("no checkpoints: a deleted tail, a deleted case or a chain "
                            "recomputed with the row keys cannot be detected")
    return report


def _check_case(report: Report, case_id: str, rows: list[LogRow], keyring: RowKeyring,
                checkpoints: CheckpointLog) -> None:
    if rows:
        report.cases += 1
        report.rows += len(rows)
        report.unkeyed_rows += sum(1 for r in rows if r.hash_version == HASH_V1)
        report.findings += check_rows(rows, keyring)
    head = checkpoints.heads.get(case_id)
    if head is None:
        return
    seq, hash_ = head
    signer = f"checkpoint #{checkpoints.signed_in[case_id]}"
    if not rows:
        report.findings.append(Finding(case_id, None, (
            f"case deleted: {signer} signed it up to seq {seq}")))
        return
    last = rows[-1].seq
    if last < seq:
        report.findings.append(Finding(case_id, last + 1, (
            f"rows {last + 1}..{seq} deleted (tail): {signer} signed the case up to seq {seq}")))
    at = next((r for r in rows if r.seq == seq), None)
    if at is not None and at.hash != hash_:
        report.findings.append(Finding(case_id, seq, (
            f"hash differs from the one {signer} signed: the chain was rewritten")))
