"""Faults under load (issue 10): during one run of chats taken and solved by desktops, every
service is SIGKILLed in turn (twelve kills), the broker restarts and PostgreSQL restarts. Then:
nothing lost, nothing doubled, no dead letter, no escalation left open on an assigned case, every
chain intact; the duplicate offers desktops saw and the longest routing stall are printed. And
PostgreSQL flipped read-only for a few seconds (a fail-over) dead-letters and loses nothing.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from shared.caselog.store import read_case, verify_case
from shared.infra import kafka, local, postgres
from shared.infra.local import Endpoints
from tests.support.desktops import Desktops, log_in, send_chat
from tests.support.infra import TEST_STATE_DIR
from tests.support.kafka import drained, wait_for
from tests.support.services import SERVICES, ServiceProcesses

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.environ.get("SWITCHBOARD_INFRA") == "external",
                       reason="restarts the local broker and database"),
]
CHATS = 240
KILLS = 12


async def producer_for(bootstrap: str) -> AIOKafkaProducer:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True,
                                request_timeout_ms=60_000)
    await producer.start()
    return producer


async def cases_of(db: asyncpg.Connection, customer: str) -> list[str]:
    rows = await db.fetch("SELECT case_id FROM case_log WHERE type = 'case.opened'"
                          " AND payload->'customer'->>'name' = $1", customer)
    return [r["case_id"] for r in rows]


async def solved(db: asyncpg.Connection, customer: str) -> int:
    value: int = await db.fetchval(
        "SELECT count(*) FROM case_log o WHERE o.type = 'case.opened'"
        " AND o.payload->'customer'->>'name' = $1 AND EXISTS (SELECT 1 FROM case_log s"
        " WHERE s.case_id = o.case_id AND s.type = 'case.solved')", customer)
    return value


async def assert_whole(db: asyncpg.Connection, cases: list[str], sessions: int) -> None:
    """Each chat one case; each case complete, once, in order, chained; no dead letters."""
    assert len(cases) == len(set(cases)) == sessions
    for case_id in cases:
        rows = await read_case(db, case_id)
        counts = Counter(r.type for r in rows)
        for once in ("case.opened", "contact.received", "case.assigned", "case.solved"):
            assert counts[once] == 1, (case_id, counts)
        assert await verify_case(db, case_id) is None
    open_on_assigned = await db.fetchval(
        "SELECT count(*) FROM escalation e WHERE e.state = 'open' AND e.case_id = ANY($1)"
        " AND EXISTS (SELECT 1 FROM case_log l WHERE l.case_id = e.case_id"
        " AND l.type = 'case.assigned')", cases)
    assert open_on_assigned == 0


def fault_plan(services: ServiceProcesses) -> list[tuple[str, Callable[[], None]]]:
    """Twelve SIGKILLs in rotation (each service restarted at once), a broker restart after a
    third of them, a database restart after two thirds."""
    def kill(name: str) -> Callable[[], None]:
        def fault() -> None:
            services.kill(name)
            services.start(name)
        return fault

    def broker() -> None:
        kafka.stop(TEST_STATE_DIR)
        local.up(TEST_STATE_DIR, fast=True)

    def database() -> None:
        postgres.stop(TEST_STATE_DIR)
        local.up(TEST_STATE_DIR, fast=True)

    plan: list[tuple[str, Callable[[], None]]] = []
    for n in range(KILLS):
        plan.append((f"kill {SERVICES[n % len(SERVICES)]}", kill(SERVICES[n % len(SERVICES)])))
        if n == KILLS // 3:
            plan.append(("broker restart", broker))
        if n == 2 * KILLS // 3:
            plan.append(("database restart", database))
    return plan


@pytest.mark.timeout(1200)  # twelve kills and two restarts, each waited out
async def test_kills_a_broker_restart_and_a_database_restart_under_load(
    endpoints: Endpoints, services: ServiceProcesses, app_db: asyncpg.Connection
) -> None:
    bootstrap, tag = endpoints.kafka_bootstrap_servers, uuid.uuid4().hex[:8]
    customer, agents = f"Faults {tag}", [f"faults-{tag}-{i}" for i in range(6)]
    dead_before = await app_db.fetchval("SELECT count(*) FROM dead_letter")
    await app_db.close()
    producer = await producer_for(bootstrap)
    desktops = Desktops(bootstrap, agents)
    working = asyncio.create_task(desktops.run(producer))
    faults = fault_plan(services)
    every = CHATS // (len(faults) + 1)
    try:
        await log_in(producer, agents, chat_capacity=3)
        for n in range(CHATS):
            if n and n % every == 0 and faults:
                what, fault = faults.pop(0)
                began = time.monotonic()
                await asyncio.to_thread(fault)
                print(f"[faults] {what} after chat {n}: {time.monotonic() - began:.1f} s")
            await send_chat(producer, f"faults-{tag}-{n}", customer)
            await asyncio.sleep(0.1)
        assert not faults
        db = await asyncpg.connect(endpoints.database_url)
        try:
            await wait_for(lambda: _all_solved(db, customer), timeout=300,
                           what=f"{CHATS} chats routed and solved after the faults")
            await drained(bootstrap)
            await assert_whole(db, await cases_of(db, customer), CHATS)
            assert await db.fetchval("SELECT count(*) FROM dead_letter") == dead_before
            stall = await db.fetchval(
                "SELECT max(gap) FROM (SELECT time - lag(time) OVER (ORDER BY time) AS gap"
                " FROM case_log WHERE type = 'routing.decided' AND case_id = ANY($1)) g",
                await cases_of(db, customer))
        finally:
            await db.close()
    finally:
        working.cancel()
        await asyncio.gather(working, return_exceptions=True)
        await producer.stop()
    report = (f"{KILLS} kills, a broker and a database restart: {CHATS} chats, lost 0,"
              f" doubled 0, dead letters 0; offers delivered twice to desktops:"
              f" {desktops.duplicate_deliveries} of {len(desktops.offers)}; longest gap between"
              f" routing decisions {stall}")
    print(f"[faults] {report}")
    (TEST_STATE_DIR / "faults-report.txt").write_text(report + "\n")
    assert all(services.alive().values()), services.alive()


async def _all_solved(db: asyncpg.Connection, customer: str) -> bool:
    return await solved(db, customer) >= CHATS


async def test_a_read_only_database_for_a_few_seconds_dead_letters_and_loses_nothing(
    endpoints: Endpoints, services: ServiceProcesses, app_db: asyncpg.Connection,
    superuser_db: asyncpg.Connection
) -> None:
    bootstrap, tag = endpoints.kafka_bootstrap_servers, uuid.uuid4().hex[:8]
    customer, agents = f"Read-only {tag}", [f"ro-{tag}-{i}" for i in range(4)]
    dead_before = await app_db.fetchval("SELECT count(*) FROM dead_letter")
    producer = await producer_for(bootstrap)
    desktops = Desktops(bootstrap, agents)
    working = asyncio.create_task(desktops.run(producer))
    chats, flipped_at = 40, None
    await superuser_db.execute("SET default_transaction_read_only = off")  # this session only
    try:
        await log_in(producer, agents, chat_capacity=3)
        for n in range(chats):
            if n == chats // 4:  # as during a fail-over: every new transaction is read-only
                await superuser_db.execute(
                    "ALTER SYSTEM SET default_transaction_read_only = on")
                await superuser_db.execute("SELECT pg_reload_conf()")
                flipped_at = datetime.now(UTC)
            if n == chats // 2:
                await superuser_db.execute("ALTER SYSTEM RESET default_transaction_read_only")
                await superuser_db.execute("SELECT pg_reload_conf()")
            await send_chat(producer, f"ro-{tag}-{n}", customer)
            await asyncio.sleep(0.15)
        await wait_for(lambda: _solved_n(app_db, customer, chats), timeout=180,
                       what="every chat solved after the read-only spell")
        await drained(bootstrap)
        await assert_whole(app_db, await cases_of(app_db, customer), chats)
        assert await app_db.fetchval("SELECT count(*) FROM dead_letter") == dead_before
        assert flipped_at is not None
    finally:
        await superuser_db.execute("ALTER SYSTEM RESET default_transaction_read_only")
        await superuser_db.execute("SELECT pg_reload_conf()")
        working.cancel()
        await asyncio.gather(working, return_exceptions=True)
        await producer.stop()


async def _solved_n(db: asyncpg.Connection, customer: str, n: int) -> bool:
    return await solved(db, customer) >= n
