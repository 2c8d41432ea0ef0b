"""Attacks on the case log by its owner and by a superuser, on the real PostgreSQL: each is
performed, then `switchboard log verify` (the CLI, as an operator runs it) must name it with the
case and the row. Before each attack the same verify passes, so every assertion can fail."""

from __future__ import annotations

import dataclasses
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from shared.caselog.chain import GENESIS_HASH, HASH_V2, row_hash, row_mac
from shared.caselog.checkpoint import take_checkpoint
from shared.caselog.keys import checkpoint_keys_from, row_keyring
from shared.caselog.store import LogRow, append_events, read_case
from shared.contracts.case_events import CaseQueued
from shared.events import CaseEvent
from shared.infra.local import Endpoints
from shared.settings import get_settings

pytestmark = pytest.mark.integration
SOURCE = "switchboard/test"


def queued(case_id: str, n: int) -> CaseEvent:
    return CaseEvent.derived(f"{case_id}-{n}", "test", case_id, "case.queued",
                             datetime.now(UTC), CaseQueued(case_id=case_id, queue=f"q{n}",
                                                           priority="normal"))


async def new_case(app_db: asyncpg.Connection, rows: int) -> str:
    case_id = f"case-{uuid.uuid4()}"
    async with app_db.transaction():
        await append_events(app_db, [queued(case_id, n) for n in range(rows)], source=SOURCE)
    return case_id


@pytest.fixture(params=["owner", "superuser"])
async def attacker(request: pytest.FixtureRequest,
                   endpoints: Endpoints) -> AsyncIterator[asyncpg.Connection]:
    """A connection as the log's owner (the migrations' role) or as a superuser."""
    url = (endpoints.database_admin_url if request.param == "owner"
           else endpoints.database_superuser_url)
    conn = await asyncpg.connect(url)
    yield conn
    await conn.close()


@pytest.fixture
def checkpoints(tmp_path: Path) -> Path:
    return tmp_path / "checkpoints.jsonl"


async def checkpoint(app_db: asyncpg.Connection, path: Path) -> int:
    """Take a checkpoint as the periodic job does: the services' role, the signing key."""
    body = await take_checkpoint(app_db, path, checkpoint_keys_from(get_settings()))
    return int(body["n"])


def log_cli(endpoints: Endpoints, path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`switchboard log ARGS` as an operator runs it, with `path` as the checkpoint file."""
    env = {**os.environ, **endpoints.as_env(), "SWITCHBOARD_INFRA": "external",
           "CASELOG_CHECKPOINT_FILE": str(path)}
    return subprocess.run([sys.executable, "-m", "cli", "log", *args],
                          env=env, capture_output=True, text=True, timeout=120, check=False)


def log_verify(endpoints: Endpoints, path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return log_cli(endpoints, path, "verify", *args)


def verified(endpoints: Endpoints, path: Path, case_id: str) -> None:
    done = log_verify(endpoints, path, case_id)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok: 1 case chain(s)")


def broken(endpoints: Endpoints, path: Path, *args: str) -> str:
    done = log_verify(endpoints, path, *args)
    assert done.returncode == 1, (done.stdout, done.stderr)
    print(done.stderr)  # shown with -s: what an operator reads
    return done.stderr


async def watched_case(endpoints: Endpoints, app_db: asyncpg.Connection, path: Path,
                       rows: int) -> tuple[str, int]:
    """A case of `rows` rows, a checkpoint over it, and a verify that passes: (case, n)."""
    case_id = await new_case(app_db, rows)
    n = await checkpoint(app_db, path)
    verified(endpoints, path, case_id)
    return case_id, n


async def with_trigger_off(conn: asyncpg.Connection, sql: str, *args: object) -> None:
    """The owner's (or a superuser's) way past the append-only trigger."""
    async with conn.transaction():
        await conn.execute("ALTER TABLE case_log DISABLE TRIGGER case_log_no_update_delete")
        await conn.execute(sql, *args)
        await conn.execute("ALTER TABLE case_log ENABLE TRIGGER case_log_no_update_delete")


async def recompute_from(conn: asyncpg.Connection, rows: list[LogRow], first: int,
                         key: bytes | None = None) -> None:
    """Rewrite row `first`'s data and recompute the hashes of it and every later row (and,
    given the row key, their MACs)."""
    prev = rows[first - 2].hash if first > 1 else GENESIS_HASH
    async with conn.transaction():
        await conn.execute("ALTER TABLE case_log DISABLE TRIGGER case_log_no_update_delete")
        for row in rows[first - 1:]:
            data = row.data.replace('"q', '"z') if row.seq == first else row.data
            changed = dataclasses.replace(row, data=data, prev_hash=prev)
            digest = row_hash(prev, changed, HASH_V2)
            mac = row_mac(key, digest) if key is not None else row.mac
            await conn.execute(
                "UPDATE case_log SET data = $3, prev_hash = $4, hash = $5, mac = $6"
                " WHERE case_id = $1 AND seq = $2", row.case_id, row.seq, data, prev, digest, mac)
            prev = digest
        await conn.execute("ALTER TABLE case_log ENABLE TRIGGER case_log_no_update_delete")


async def test_a_recomputed_chain_is_named_by_its_macs_and_the_checkpoint(
    endpoints: Endpoints, app_db: asyncpg.Connection, attacker: asyncpg.Connection,
    checkpoints: Path,
) -> None:
    case_id, n = await watched_case(endpoints, app_db, checkpoints, 4)

    await recompute_from(attacker, await read_case(app_db, case_id), first=2)

    out = broken(endpoints, checkpoints, case_id)
    for seq in (2, 3, 4):  # every rewritten row, by its MAC
        assert f"BROKEN case {case_id} at seq {seq}: MAC does not verify" in out
    assert (f"BROKEN case {case_id} at seq 4: hash differs from the one checkpoint #{n} signed"
            in out)
    assert "trigger case_log_no_update_delete changed" in out and f"since checkpoint #{n}" in out
    assert f"BROKEN case {case_id} at seq 1" not in out


async def test_a_chain_recomputed_with_the_row_key_is_named_by_the_checkpoint(
    endpoints: Endpoints, app_db: asyncpg.Connection, attacker: asyncpg.Connection,
    checkpoints: Path,
) -> None:
    """Someone who holds a service's row key and the owner's password: the MACs are valid
    again, the signed head is not."""
    case_id, n = await watched_case(endpoints, app_db, checkpoints, 3)
    rows = await read_case(app_db, case_id)
    key = row_keyring().verifying_key(rows[0].key_id or "")
    assert key is not None

    await recompute_from(attacker, rows, first=2, key=key)

    out = broken(endpoints, checkpoints, case_id)
    assert "MAC does not verify" not in out
    assert (f"BROKEN case {case_id} at seq 3: hash differs from the one checkpoint #{n} signed: "
            "the chain was rewritten") in out


async def test_a_deleted_tail_is_named(
    endpoints: Endpoints, app_db: asyncpg.Connection, attacker: asyncpg.Connection,
    checkpoints: Path,
) -> None:
    case_id, n = await watched_case(endpoints, app_db, checkpoints, 4)

    await with_trigger_off(attacker, "DELETE FROM case_log WHERE case_id = $1 AND seq >= 3",
                           case_id)

    out = broken(endpoints, checkpoints, case_id)
    assert (f"BROKEN case {case_id} at seq 3: rows 3..4 deleted (tail): checkpoint #{n} signed "
            "the case up to seq 4") in out


async def test_a_deleted_case_is_named_alone_and_in_the_whole_log(
    endpoints: Endpoints, app_db: asyncpg.Connection, attacker: asyncpg.Connection,
    checkpoints: Path,
) -> None:
    case_id, n = await watched_case(endpoints, app_db, checkpoints, 3)

    await with_trigger_off(attacker, "DELETE FROM case_log WHERE case_id = $1", case_id)

    expected = f"BROKEN case {case_id}: case deleted: checkpoint #{n} signed it up to seq 3"
    assert expected in broken(endpoints, checkpoints, case_id)
    assert expected in broken(endpoints, checkpoints)


async def forge_next_row(conn: asyncpg.Connection, rows: list[LogRow], key_id: str | None,
                         mac: str | None) -> None:
    """Insert the row that would come next, with a correct version 2 hash."""
    last = rows[-1]
    forged = dataclasses.replace(
        last, seq=last.seq + 1, event_id=str(uuid.uuid4()), data='{"forged":true}',
        recorded_at=datetime.now(UTC), key_id=key_id, prev_hash=last.hash)
    digest = row_hash(last.hash, forged, HASH_V2)
    await conn.execute(
        "INSERT INTO case_log (case_id, seq, event_id, type, source, time, recorded_at, trace_id,"
        " data, prev_hash, hash, hash_version, key_id, mac)"
        " VALUES ($1, $2, $3::uuid, $4, $5, $6, $7, $8, $9, $10, $11, 2, $12, $13)",
        forged.case_id, forged.seq, forged.event_id, forged.type, forged.source, forged.time,
        forged.recorded_at, forged.trace_id, forged.data, last.hash, digest, key_id, mac)


async def test_a_forged_row_is_named(
    endpoints: Endpoints, app_db: asyncpg.Connection, attacker: asyncpg.Connection,
    checkpoints: Path,
) -> None:
    case_id, _ = await watched_case(endpoints, app_db, checkpoints, 2)
    rows = await read_case(app_db, case_id)

    await forge_next_row(attacker, rows, rows[0].key_id, row_mac(secrets.token_bytes(32), "x"))

    out = broken(endpoints, checkpoints, case_id)
    assert f"BROKEN case {case_id} at seq 3: MAC does not verify: row forged" in out


async def test_a_row_forged_through_the_services_insert_grant_is_named(
    endpoints: Endpoints, app_db: asyncpg.Connection, checkpoints: Path,
) -> None:
    case_id = await new_case(app_db, 2)
    rows = await read_case(app_db, case_id)
    with pytest.raises(asyncpg.CheckViolationError):  # an unkeyed row is refused outright
        await forge_next_row(app_db, rows, None, None)
    await forge_next_row(app_db, rows, "switchboard/router#local", "00" * 32)
    out = broken(endpoints, checkpoints, case_id)
    assert (f"BROKEN case {case_id} at seq 3: MAC key 'switchboard/router#local' is not a key "
            f"of source '{SOURCE}' (forged)") in out


async def test_a_trigger_disabled_between_checkpoints_is_named(
    endpoints: Endpoints, app_db: asyncpg.Connection, attacker: asyncpg.Connection,
    checkpoints: Path,
) -> None:
    case_id, first = await watched_case(endpoints, app_db, checkpoints, 1)

    await attacker.execute("ALTER TABLE case_log DISABLE TRIGGER case_log_no_update_delete")
    await attacker.execute("ALTER TABLE case_log ENABLE TRIGGER case_log_no_update_delete")
    second = first + 1  # taken on demand, by the command an operator or a cron job runs
    taken = log_cli(endpoints, checkpoints, "checkpoint")
    assert taken.returncode == 0, taken.stderr
    assert taken.stdout.startswith(f"checkpoint #{second} at ")

    out = broken(endpoints, checkpoints, case_id)
    assert ("BROKEN log: trigger case_log_no_update_delete changed (disabled and re-enabled, "
            "or altered: xmin ") in out
    assert f"between checkpoint #{first} (" in out and f"and checkpoint #{second} (" in out


async def test_a_trigger_left_disabled_is_named(
    endpoints: Endpoints, app_db: asyncpg.Connection, attacker: asyncpg.Connection,
    checkpoints: Path,
) -> None:
    case_id, _ = await watched_case(endpoints, app_db, checkpoints, 1)
    await attacker.execute("ALTER TABLE case_log DISABLE TRIGGER case_log_no_truncate")
    try:
        out = broken(endpoints, checkpoints, case_id)
    finally:
        await attacker.execute("ALTER TABLE case_log ENABLE TRIGGER case_log_no_truncate")
    assert "BROKEN log: trigger case_log_no_truncate is disabled now" in out
    assert "trigger case_log_no_truncate changed (enabled state changed: enabled O -> D" in out


async def test_a_superuser_bypassing_triggers_without_ddl_is_still_named_by_the_mac(
    endpoints: Endpoints, app_db: asyncpg.Connection, superuser_db: asyncpg.Connection,
    checkpoints: Path,
) -> None:
    """`session_replication_role = replica` skips triggers without touching the catalog: the
    guards cannot see it (documented), the rewritten row's MAC can."""
    case_id, _ = await watched_case(endpoints, app_db, checkpoints, 2)
    rows = await read_case(app_db, case_id)
    async with superuser_db.transaction():
        await superuser_db.execute("SET LOCAL session_replication_role = replica")
        await recompute_from_without_ddl(superuser_db, rows)
    out = broken(endpoints, checkpoints, case_id)
    assert f"BROKEN case {case_id} at seq 2: MAC does not verify" in out
    assert "trigger" not in out


async def recompute_from_without_ddl(conn: asyncpg.Connection, rows: list[LogRow]) -> None:
    row = rows[1]
    data = row.data.replace('"q', '"z')
    digest = row_hash(row.prev_hash, dataclasses.replace(row, data=data), HASH_V2)
    await conn.execute("UPDATE case_log SET data = $3, hash = $4 WHERE case_id = $1 AND seq = $2",
                       row.case_id, row.seq, data, digest)


async def test_rows_downgraded_to_the_unkeyed_version_are_named(
    endpoints: Endpoints, app_db: asyncpg.Connection, attacker: asyncpg.Connection,
    checkpoints: Path,
) -> None:
    """Rewrite a row as an unkeyed version 1 row (hash recomputed the old way, no MAC needed;
    the constraint refuses that even to the owner, so it is dropped and put back): the row
    follows keyed rows, the count of unkeyed rows no longer matches the checkpoint, and the
    constraint is not the one the checkpoint recorded."""
    case_id, n = await watched_case(endpoints, app_db, checkpoints, 2)
    row = (await read_case(app_db, case_id))[1]
    data = row.data.replace('"q', '"z')
    digest = row_hash(row.prev_hash, dataclasses.replace(row, data=data))
    update = ("UPDATE case_log SET data = $3, hash = $4, hash_version = 1, key_id = NULL,"
              " mac = NULL WHERE case_id = $1 AND seq = $2")
    with pytest.raises(asyncpg.CheckViolationError):
        await with_trigger_off(attacker, update, case_id, 2, data, digest)
    async with attacker.transaction():
        await attacker.execute("ALTER TABLE case_log DROP CONSTRAINT case_log_keyed_rows")
        await with_trigger_off(attacker, update, case_id, 2, data, digest)
        await attacker.execute(
            "ALTER TABLE case_log ADD CONSTRAINT case_log_keyed_rows CHECK (hash_version >= 2"
            " AND key_id IS NOT NULL AND mac IS NOT NULL) NOT VALID")

    out = broken(endpoints, checkpoints, case_id)
    assert f"BROKEN case {case_id} at seq 2: unkeyed version 1 row after keyed rows" in out
    assert "BROKEN log: constraint case_log_keyed_rows changed (altered: xmin " in out
    assert "unkeyed version 1 rows now" in out and f"at checkpoint #{n} (" in out
