"""Fault tests: kill a service, restart the database or the broker; nothing lost or doubled."""

from __future__ import annotations

import os
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg
import pytest

from shared.caselog.store import read_case, verify_case
from shared.contracts.topics import INBOUND_CHAT, INBOUND_VOICE
from shared.infra import kafka, local, postgres
from shared.infra.local import Endpoints
from tests.support import contacts
from tests.support.cases import stored_key
from tests.support.infra import TEST_STATE_DIR
from tests.support.kafka import cloudevent_headers, publish, wait_for
from tests.support.services import ServiceProcesses

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.environ.get("SWITCHBOARD_INFRA") == "external",
                       reason="restarts the local broker and database"),
]


async def publish_chats(bootstrap: str, sessions: list[str]) -> None:
    for session in sessions:
        await publish(bootstrap, INBOUND_CHAT, contacts.chat_message(session, "Order never came"),
                      cloudevent_headers("chat.message"), key=session)


async def chats_around_a_fault(bootstrap: str, label: str, n: int, fault: Callable[[], object],
                               recover: Callable[[], object] = lambda: None) -> list[str]:
    """Half the chats before the fault, half after it, then recovery: their session ids."""
    tag = uuid.uuid4().hex[:8]
    sessions = [f"{label}-{tag}-{i}" for i in range(n)]
    await publish_chats(bootstrap, sessions[: n // 2])
    fault()
    await publish_chats(bootstrap, sessions[n // 2:])
    recover()
    return sessions


async def assert_each_session_logged_once(db: asyncpg.Connection, sessions: list[str]) -> None:
    async def all_logged() -> dict[str, str] | None:
        rows = await db.fetch("SELECT thread_key, case_id FROM intake_thread"
                              " WHERE thread_key = ANY($1::text[])",
                              [stored_key(f"chat:{s}") for s in sessions])
        if len(rows) < len(sessions):
            return None
        cases = {r["thread_key"]: r["case_id"] for r in rows}
        for case_id in cases.values():
            types = {r.type for r in await read_case(db, case_id)}
            if not {"contact.received", "assignment.offered", "sla.started"} <= types and \
                    not {"contact.received", "case.queued", "sla.started"} <= types:
                return None
        return cases

    cases = await wait_for(all_logged, timeout=120, what=f"{len(sessions)} chats in the log")
    for case_id in cases.values():
        counts = Counter(r.type for r in await read_case(db, case_id))
        assert counts["case.opened"] == 1 and counts["contact.received"] == 1, counts
        assert counts["sla.started"] == 1 and counts["case.classified"] == 1, counts
        assert await verify_case(db, case_id) is None


async def test_intake_killed_mid_stream_loses_and_doubles_nothing(
    endpoints: Endpoints, services: ServiceProcesses, app_db: asyncpg.Connection
) -> None:
    sessions = await chats_around_a_fault(
        endpoints.kafka_bootstrap_servers, "kill", 30,
        fault=lambda: services.kill("intake"), recover=lambda: services.start("intake"))
    await assert_each_session_logged_once(app_db, sessions)


async def test_sla_killed_while_clocks_fall_due_fires_each_breach_exactly_once(
    endpoints: Endpoints, services: ServiceProcesses, app_db: asyncpg.Connection
) -> None:
    tag = uuid.uuid4().hex[:8]
    calls = [f"due-{tag}-{n}" for n in range(3)]
    for call in calls:
        await publish(endpoints.kafka_bootstrap_servers, INBOUND_VOICE,
                      contacts.call_started(call), cloudevent_headers("call.started"), key=call)

    async def clocks() -> list[asyncpg.Record] | None:
        rows = await app_db.fetch(
            "SELECT c.case_id, c.due_at, c.state FROM sla_clock c JOIN intake_thread t"
            " ON t.case_id = c.case_id WHERE t.thread_key = ANY($1::text[])",
            [stored_key(f"call:{c}") for c in calls])
        return rows if len(rows) == len(calls) else None

    started = await wait_for(clocks, what="three running clocks")
    services.kill("sla")
    latest_due = max(r["due_at"] for r in started)
    await wait_for(lambda: datetime.now(UTC) > latest_due, what="the clocks to fall due")
    assert all(r["state"] == "running" for r in await clocks() or [])
    services.start("sla")

    async def all_escalated() -> bool:
        for row in started:
            types = [r.type for r in await read_case(app_db, row["case_id"])]
            if "escalation.notified" not in types:
                return False
        return True

    await wait_for(all_escalated, timeout=90, what="each breach to escalate")
    for row in started:
        log = await read_case(app_db, row["case_id"])
        breaches = [r for r in log if r.type == "sla.breached"]
        assert len(breaches) == 1
        assert datetime.fromisoformat(breaches[0].payload["breached_at"]) == row["due_at"]
        assert breaches[0].payload["overdue_seconds"] > 0  # it came due while sla was down
        assert Counter(r.type for r in log)["case.escalated"] == 1


async def test_a_database_restart_loses_nothing(
    endpoints: Endpoints, services: ServiceProcesses, app_db: asyncpg.Connection
) -> None:
    await app_db.close()
    sessions = await chats_around_a_fault(
        endpoints.kafka_bootstrap_servers, "pg", 10,
        fault=lambda: postgres.stop(TEST_STATE_DIR),
        recover=lambda: local.up(TEST_STATE_DIR, fast=True))
    db = await asyncpg.connect(endpoints.database_url)
    try:
        await assert_each_session_logged_once(db, sessions)
    finally:
        await db.close()
    assert all(services.alive().values()), services.alive()


async def test_a_broker_restart_loses_nothing(
    endpoints: Endpoints, services: ServiceProcesses, app_db: asyncpg.Connection
) -> None:
    def restart_broker() -> None:  # the second half can only be published once it is back
        kafka.stop(TEST_STATE_DIR)
        local.up(TEST_STATE_DIR, fast=True)

    sessions = await chats_around_a_fault(endpoints.kafka_bootstrap_servers, "kafka", 10,
                                          fault=restart_broker)
    await assert_each_session_logged_once(app_db, sessions)
    assert all(services.alive().values()), services.alive()
