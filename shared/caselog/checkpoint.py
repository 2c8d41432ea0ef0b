"""Signed checkpoints of the case log: every case's head, and the state of the log's guards,
signed with an Ed25519 key the database does not hold, appended to a file its owner cannot
rewrite.

One line per checkpoint, the RFC 8785 text of

    {"checkpoint": BODY, "key": KEY_ID, "signature": base64url(Ed25519(JCS(BODY)))}

BODY = {
  "format": "switchboard/case_log/checkpoint/v1",
  "n": 1, 2, ... (gap-free),
  "prev": hex SHA-256 of the previous line's JCS(BODY), 64 zeros for the first,
  "taken_at": UTC instant, "database": name@cluster system identifier,
  "heads": [[case_id, seq, hash], ...]   the heads new or advanced since the previous checkpoint,
  "cases": number of cases, "heads_digest": hex SHA-256 over all heads (see heads_digest()),
  "unkeyed_rows": rows of hash version 1 (frozen since migration 0040),
  "guards": {name: {attribute: value}}  triggers, constraints and the table itself, with the
            xmin of their catalog rows: disabling and re-enabling a trigger, replacing its
            function or dropping the constraint changes them even if the state looks the same,
  "anomalies": [[case_id, what], ...]    what the taker found already broken (never blessed),
}

Replaying the lines in order gives every case's last signed head. The map only moves forward:
a head advances only while the row at the previously signed head still has its hash, so a
deleted or rewritten tail stays visible to `log verify` in every later checkpoint too.

Where it runs: `switchboard log checkpoint` (once, or `--every SECONDS`), or
`run_checkpoints()` as a background task of one service. One writer per file (a file lock
serialises writers on one host).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from cryptography.exceptions import InvalidSignature

from shared.caselog.chain import GENESIS_HASH, utc_text
from shared.caselog.chain import field as chain_field
from shared.caselog.jcs import canonicalize
from shared.caselog.keys import CheckpointKeys, b64decode, b64encode, checkpoint_keys_from
from shared.settings import Settings, default_state_dir

log = logging.getLogger("switchboard.caselog.checkpoint")

FORMAT = "switchboard/case_log/checkpoint/v1"
DEFAULT_FILE = "caselog-checkpoints.jsonl"

Head = tuple[int, str]  # (seq, hash)


def checkpoint_path(settings: Settings) -> Path:
    if settings.caselog_checkpoint_file:
        return Path(settings.caselog_checkpoint_file)
    return default_state_dir() / DEFAULT_FILE


def heads_digest(heads: dict[str, Head]) -> str:
    """SHA-256 over every head, sorted by the UTF-8 bytes of the case id, each as
    field(case_id) || field(seq) || field(hash) (the framing of the row hash)."""
    digest = hashlib.sha256()
    for case_id in sorted(heads, key=lambda c: c.encode("utf-8")):
        seq, hash_ = heads[case_id]
        digest.update(chain_field(case_id) + chain_field(str(seq)) + chain_field(hash_))
    return digest.hexdigest()


# -- the log's state, as the services' role can read it ---------------------------------------

_HEADS_SQL = """
WITH RECURSIVE c(case_id) AS (
    (SELECT case_id FROM case_log ORDER BY case_id LIMIT 1)
    UNION ALL
    SELECT (SELECT l.case_id FROM case_log l WHERE l.case_id > c.case_id
            ORDER BY l.case_id LIMIT 1)
    FROM c WHERE c.case_id IS NOT NULL
)
SELECT c.case_id, h.seq, h.hash FROM c CROSS JOIN LATERAL
    (SELECT seq, hash FROM case_log WHERE case_id = c.case_id ORDER BY seq DESC LIMIT 1) AS h
WHERE c.case_id IS NOT NULL
"""  # a skip scan of the primary key: one probe per case, not a read of every row

_GUARDS_SQL = """
SELECT 'table ' || c.relname AS name,
       json_build_object('oid', c.oid::text,
                         'owner', pg_get_userbyid(c.relowner))::text AS state
FROM pg_class c WHERE c.oid = 'case_log'::regclass
UNION ALL
SELECT 'trigger ' || t.tgname,
       json_build_object('enabled', t.tgenabled::text, 'xmin', t.xmin::text,
                         'function', p.oid::regprocedure::text, 'function_xmin', p.xmin::text,
                         'function_md5', md5(p.prosrc))::text
FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
WHERE t.tgrelid = 'case_log'::regclass AND NOT t.tgisinternal
UNION ALL
SELECT 'constraint ' || k.conname,
       json_build_object('validated', k.convalidated::text, 'xmin', k.xmin::text,
                         'definition', pg_get_constraintdef(k.oid))::text
FROM pg_constraint k WHERE k.conrelid = 'case_log'::regclass AND k.contype = 'c'
"""


@dataclass(frozen=True)
class LogState:
    heads: dict[str, Head]
    guards: dict[str, dict[str, str]]
    unkeyed_rows: int
    database: str


async def read_guards(conn: asyncpg.Connection) -> dict[str, dict[str, str]]:
    return {r["name"]: json.loads(r["state"]) for r in await conn.fetch(_GUARDS_SQL)}


async def read_state(conn: asyncpg.Connection) -> LogState:
    """Heads, guards and the unkeyed row count from one snapshot."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        heads = {r["case_id"]: (r["seq"], r["hash"]) for r in await conn.fetch(_HEADS_SQL)}
        guards = await read_guards(conn)
        unkeyed = await conn.fetchval("SELECT count(*) FROM case_log WHERE hash_version < 2")
        database = await database_identity(conn)
    return LogState(heads, guards, int(unkeyed), database)


async def database_identity(conn: asyncpg.Connection) -> str:
    """`<database>@<cluster's system identifier>`: which database a checkpoint file is of."""
    return str(await conn.fetchval(
        "SELECT current_database() || '@' || system_identifier FROM pg_control_system()"))


async def hashes_at(conn: asyncpg.Connection, wanted: dict[str, int]) -> dict[str, str]:
    """The stored hash of each (case, seq) asked for that still exists."""
    if not wanted:
        return {}
    rows = await conn.fetch(
        "SELECT l.case_id, l.hash FROM unnest($1::text[], $2::bigint[]) AS w(case_id, seq)"
        " JOIN case_log l ON l.case_id = w.case_id AND l.seq = w.seq",
        list(wanted), list(wanted.values()))
    return {r["case_id"]: r["hash"] for r in rows}


# -- the file --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Checkpoint:
    n: int
    taken_at: str
    body: dict[str, Any]
    line: int  # in the file, from 1


@dataclass
class CheckpointLog:
    """The checkpoints of a file, checked: signatures, numbering and links."""

    checkpoints: list[Checkpoint] = field(default_factory=list)
    heads: dict[str, Head] = field(default_factory=dict)  # every case's last signed head
    signed_in: dict[str, int] = field(default_factory=dict)  # case -> n that signed its head
    problems: list[str] = field(default_factory=list)
    last_digest: str = GENESIS_HASH  # SHA-256 of the last body's JCS

    @property
    def last(self) -> Checkpoint | None:
        return self.checkpoints[-1] if self.checkpoints else None


def body_digest(body: dict[str, Any]) -> str:
    return hashlib.sha256(canonicalize(body).encode("utf-8")).hexdigest()


def read_checkpoints(path: Path, keys: CheckpointKeys) -> CheckpointLog:
    """Replay a checkpoint file. A line that fails is reported in `problems` and skipped."""
    result = CheckpointLog()
    if not path.exists():
        return result
    with path.open("r", encoding="utf-8") as f:
        for number, text in enumerate(f, start=1):
            _replay(result, number, text, keys)
    return result


def _replay(result: CheckpointLog, number: int, text: str, keys: CheckpointKeys) -> None:
    where = f"checkpoint file line {number}"
    try:
        record = json.loads(text)
        body, key_id, signature = record["checkpoint"], record["key"], record["signature"]
    except (ValueError, KeyError, TypeError):
        result.problems.append(f"{where}: not a checkpoint record")
        return
    public = keys.verifying.get(key_id)
    if public is None:
        result.problems.append(f"{where}: signed with unknown key {key_id} "
                               "(CASELOG_CHECKPOINT_VERIFY_KEYS)")
        return
    try:
        public.verify(b64decode(signature), canonicalize(body).encode("utf-8"))
    except (InvalidSignature, ValueError):
        result.problems.append(f"{where}: signature does not verify (checkpoint altered)")
        return
    if body.get("format") != FORMAT:
        result.problems.append(f"{where}: unknown format {body.get('format')!r}")
        return
    n = body["n"]
    expected = result.last.n + 1 if result.last else 1
    if n != expected or body["prev"] != result.last_digest:
        result.problems.append(
            f"{where}: checkpoint #{n} does not follow #{expected - 1} (a checkpoint is missing "
            "or out of order)")
    for case_id, seq, hash_ in body["heads"]:
        result.heads[case_id] = (seq, hash_)
        result.signed_in[case_id] = n
    if heads_digest(result.heads) != body["heads_digest"]:
        result.problems.append(f"{where}: checkpoint #{n}'s heads do not add up to its digest "
                               "(a checkpoint is missing)")
    result.checkpoints.append(Checkpoint(n, body["taken_at"], body, number))
    result.last_digest = body_digest(body)


class _LockedFile:
    """The checkpoint file, opened for appending under an exclusive lock."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> _LockedFile:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        self.file = os.fdopen(fd, "a+", encoding="utf-8")
        fcntl.flock(self.file.fileno(), fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.file.fileno(), fcntl.LOCK_UN)
        self.file.close()

    def append(self, line: str) -> None:
        self.file.write(line + "\n")
        self.file.flush()
        os.fsync(self.file.fileno())


async def take_checkpoint(
    conn: asyncpg.Connection, path: Path, keys: CheckpointKeys, *, now: datetime | None = None
) -> dict[str, Any]:
    """Read the log's state, sign what changed since the file's last checkpoint and append it.

    Returns the body written."""
    if keys.signing is None:
        raise RuntimeError("no checkpoint signing key: set CASELOG_CHECKPOINT_SIGNING_KEY")
    state = await read_state(conn)
    with _LockedFile(path) as out:
        previous = read_checkpoints(path, keys)
        if previous.problems:
            # Never extend a file that does not verify: its chain of checkpoints is in doubt.
            raise RuntimeError("the checkpoint file does not verify: "
                               + "; ".join(previous.problems[:3]))
        signed = previous.heads
        still = await hashes_at(conn, {c: signed[c][0] for c, (seq, _) in state.heads.items()
                                       if c in signed and seq > signed[c][0]})
        body = next_checkpoint(previous, state, still, now or datetime.now(UTC))
        out.append(signed_record(body, keys))
    if body["anomalies"]:
        log.error("case log checkpoint #%s: %d case(s) already broken, e.g. %s", body["n"],
                  len(body["anomalies"]), body["anomalies"][0])
    return body


def next_checkpoint(previous: CheckpointLog, state: LogState, still: dict[str, str],
                    now: datetime) -> dict[str, Any]:
    """The body of the checkpoint after `previous` for the log's `state`.

    `still`: for each case whose head advanced, the hash now stored at its previously signed
    seq. A head advances only when that hash is unchanged; anything else is an anomaly, and the
    case keeps its signed head (so `log verify` keeps reporting it)."""
    signed = previous.heads
    anomalies: list[list[str]] = []
    delta: list[tuple[str, int, str]] = []
    for case_id, (seq, hash_) in sorted(state.heads.items()):
        old = signed.get(case_id)
        if old is None:
            delta.append((case_id, seq, hash_))
        elif seq > old[0]:
            if still.get(case_id) == old[1]:
                delta.append((case_id, seq, hash_))
            else:
                anomalies.append([case_id, (f"row {old[0]} changed or gone since checkpoint "
                                  f"#{previous.signed_in[case_id]}")])
        elif seq < old[0]:
            anomalies.append([case_id, f"log ends at seq {seq}, signed up to {old[0]}"])
        elif hash_ != old[1]:
            anomalies.append([case_id, (f"row {seq} changed since checkpoint "
                              f"#{previous.signed_in[case_id]}")])
    anomalies += [[c, "case gone"] for c in sorted(signed) if c not in state.heads]
    merged = dict(signed)
    merged.update({c: (s, h) for c, s, h in delta})
    last = previous.last
    return {
        "format": FORMAT,
        "n": last.n + 1 if last else 1,
        "prev": previous.last_digest,
        "taken_at": utc_text(now),
        "database": state.database,
        "cases": len(merged),
        "heads_digest": heads_digest(merged),
        "heads": delta,
        "unkeyed_rows": state.unkeyed_rows,
        "guards": state.guards,
        "anomalies": anomalies,
    }


def signed_record(body: dict[str, Any], keys: CheckpointKeys) -> str:
    """The line of the checkpoint file for `body`."""
    if keys.signing is None:
        raise RuntimeError("no checkpoint signing key: set CASELOG_CHECKPOINT_SIGNING_KEY")
    signature = keys.signing.sign(canonicalize(body).encode("utf-8"))
    return canonicalize({"checkpoint": body, "key": keys.signing_key_id(),
                         "signature": b64encode(signature)})


def append_record(path: Path, line: str) -> None:
    """Append one line to the checkpoint file under its lock (tests, tools)."""
    with _LockedFile(path) as out:
        out.append(line)


async def run_checkpoints(
    database_url: str, settings: Settings, *, stop: asyncio.Event | None = None,
    interval: float | None = None,
) -> None:
    """Take a checkpoint now and then every `interval` seconds (default: the setting) until
    `stop` is set. A failed checkpoint is logged and tried again at the next tick."""
    keys = checkpoint_keys_from(settings)
    path = checkpoint_path(settings)
    every = interval if interval is not None else settings.caselog_checkpoint_interval_seconds
    stop = stop or asyncio.Event()
    while not stop.is_set():
        try:
            conn = await asyncpg.connect(database_url)
            try:
                body = await take_checkpoint(conn, path, keys)
                log.info("case log checkpoint #%s: %s cases, %s heads advanced", body["n"],
                         body["cases"], len(body["heads"]))
            finally:
                await conn.close()
        except (OSError, asyncpg.PostgresError, RuntimeError) as e:
            log.error("case log checkpoint failed: %s", e)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=every)
