"""The case log in the real PostgreSQL: append-only for the services, tamper-evident for all."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime

import asyncpg
import pytest

from shared.caselog.chain import GENESIS_HASH, ChainedFields, canonical_json, row_hash
from shared.caselog.migrate import migration_files
from shared.caselog.store import append_events, read_case, verify_case
from shared.contracts.case_events import CaseQueued
from shared.events import CaseEvent
from shared.infra.local import Endpoints

pytestmark = pytest.mark.integration


def queued(case_id: str, n: int) -> CaseEvent:
    return CaseEvent.derived(f"{case_id}-{n}", "test", case_id, "case.queued",
                             datetime.now(UTC), CaseQueued(case_id=case_id, queue=f"q{n}",
                                                           priority="normal"))


async def append(db: asyncpg.Connection, events: list[CaseEvent]) -> list[CaseEvent]:
    async with db.transaction():
        return await append_events(db, events, source="test", trace_id=None)


async def test_appends_are_gap_free_chained_and_idempotent(app_db: asyncpg.Connection) -> None:
    case_id = f"case-{uuid.uuid4()}"
    first = await append(app_db, [queued(case_id, n) for n in range(3)])
    again = await append(app_db, [queued(case_id, n) for n in range(4)])
    assert len(first) == 3 and [e.data for e in again] == [queued(case_id, 3).data]
    rows = await read_case(app_db, case_id)
    assert [r.seq for r in rows] == [1, 2, 3, 4]
    assert await verify_case(app_db, case_id) is None


async def test_concurrent_writers_of_one_case_never_leave_a_gap(endpoints: Endpoints) -> None:
    case_id = f"case-{uuid.uuid4()}"
    pool = await asyncpg.create_pool(endpoints.database_url, min_size=4, max_size=4)
    assert pool is not None

    async def writer(offset: int) -> None:
        for n in range(offset, offset + 25):
            async with pool.acquire() as conn:
                await append(conn, [queued(case_id, n), queued(case_id, n)])

    try:
        await asyncio.gather(*(writer(k * 100) for k in range(4)))
        async with pool.acquire() as conn:
            rows = await read_case(conn, case_id)
            assert [r.seq for r in rows] == list(range(1, 101))
            assert await verify_case(conn, case_id) is None
    finally:
        await pool.close()


@pytest.mark.parametrize("statement", [
    "UPDATE case_log SET type = 'x' WHERE case_id = $1",
    "DELETE FROM case_log WHERE case_id = $1",
])
async def test_the_service_role_can_neither_update_nor_delete(
    app_db: asyncpg.Connection, statement: str
) -> None:
    case_id = f"case-{uuid.uuid4()}"
    await append(app_db, [queued(case_id, 0)])
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await app_db.execute(statement, case_id)
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await app_db.execute("TRUNCATE case_log")
    assert len(await read_case(app_db, case_id)) == 1


async def test_even_the_owner_is_refused_by_the_trigger(endpoints: Endpoints,
                                                        app_db: asyncpg.Connection) -> None:
    case_id = f"case-{uuid.uuid4()}"
    await append(app_db, [queued(case_id, 0)])
    owner = await asyncpg.connect(endpoints.database_admin_url)
    try:
        for statement in ("UPDATE case_log SET type = 'x' WHERE case_id = $1",
                          "DELETE FROM case_log WHERE case_id = $1"):
            with pytest.raises(asyncpg.PostgresError, match="append-only"):
                await owner.execute(statement, case_id)
    finally:
        await owner.close()


def log_verify(endpoints: Endpoints, *args: str) -> subprocess.CompletedProcess[str]:
    # No checkpoints here (test_case_log_attacks.py has them): a file that does not exist, so a
    # developer's own checkpoint file in the state dir is not read.
    env = {**os.environ, **endpoints.as_env(), "SWITCHBOARD_INFRA": "external",
           "CASELOG_CHECKPOINT_FILE": "/nonexistent/caselog-checkpoints.jsonl"}
    return subprocess.run([sys.executable, "-m", "cli", "log", "verify", *args],
                          env=env, capture_output=True, text=True, timeout=60, check=False)


async def test_a_row_rewritten_by_a_superuser_is_named_by_log_verify(
    endpoints: Endpoints, app_db: asyncpg.Connection, superuser_db: asyncpg.Connection
) -> None:
    case_id = f"case-{uuid.uuid4()}"
    await append(app_db, [queued(case_id, n) for n in range(3)])
    assert log_verify(endpoints, case_id).returncode == 0

    async with superuser_db.transaction():
        await superuser_db.execute("ALTER TABLE case_log DISABLE TRIGGER case_log_no_update_delete")
        await superuser_db.execute(
            "UPDATE case_log SET data = replace(data, 'q1', 'q9') WHERE case_id = $1 AND seq = 2",
            case_id)
        await superuser_db.execute("ALTER TABLE case_log ENABLE TRIGGER case_log_no_update_delete")

    one = log_verify(endpoints, case_id)
    assert one.returncode == 1
    assert f"BROKEN case {case_id} at seq 2: hash does not match row contents" in one.stderr
    everything = log_verify(endpoints)
    assert everything.returncode == 1 and case_id in everything.stderr


async def test_a_log_written_before_version_2_keeps_verifying_and_grows_keyed(
    endpoints: Endpoints, app_db: asyncpg.Connection
) -> None:
    """Migration 0040 on a log of version 1 rows (written as main's writer did, in a schema of
    their own): they still verify, new rows chain onto them keyed, and an unkeyed row can no
    longer be added."""
    schema = f"legacy_{uuid.uuid4().hex[:8]}"
    owner = await asyncpg.connect(endpoints.database_admin_url)
    try:
        await owner.execute(f"CREATE SCHEMA {schema}; SET search_path = {schema}")
        migrations = dict(migration_files())
        await owner.execute(migrations["0001_case_log.sql"])
        case_id = f"case-{uuid.uuid4()}"
        prev = GENESIS_HASH
        for seq in (1, 2):
            event = queued(case_id, seq)
            fields = ChainedFields(case_id, seq, str(event.event_id), event.type, "old",
                                   event.time, None,
                                   canonical_json(event.data.model_dump(mode="json")))
            digest = row_hash(prev, fields)
            await owner.execute(
                "INSERT INTO case_log (case_id, seq, event_id, type, source, time, trace_id,"
                " data, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, NULL, $7, $8, $9)",
                case_id, seq, event.event_id, event.type, "old", event.time, fields.data, prev,
                digest)
            prev = digest
        await owner.execute(migrations["0040_case_log_v2.sql"])
        assert await verify_case(owner, case_id) is None
        async with owner.transaction():
            await append_events(owner, [queued(case_id, 3)], source="switchboard/test")
        rows = await read_case(owner, case_id)
        assert [(r.seq, r.hash_version, r.key_id is not None) for r in rows] == \
            [(1, 1, False), (2, 1, False), (3, 2, True)]
        assert rows[2].prev_hash == rows[1].hash
        assert await verify_case(owner, case_id) is None
        with pytest.raises(asyncpg.CheckViolationError):
            await owner.execute(
                "INSERT INTO case_log (case_id, seq, event_id, type, source, time, data,"
                " prev_hash, hash, hash_version) SELECT case_id, 4, gen_random_uuid(), type,"
                " source, time, data, hash, hash, 1 FROM case_log WHERE seq = 3")
    finally:
        await owner.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await owner.close()
