"""Case-log locks under contention, on the real PostgreSQL: no deadlock from lock order, and a
batch that loses a deadlock anyway goes again whole.

Every append takes its cases' log locks (`shared.caselog.store.lock_cases`) in one sorted
statement. A transaction that appends several times must take all its cases first: the SLA
timer fires clocks trace by trace in due order, and before that fix it locked a later case,
then waited for an earlier one that a batch held while waiting for the later one (PostgreSQL
aborted one of them: four times in a 20,000-contact `make bench-e2e` saturation run).

Each test holds a case's lock on a connection of its own, waits (by polling pg_locks, not by
sleeping) until the code under test waits for it, then asks for the lock the code under test
would hold if it locked out of order.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import asyncpg
import pytest
from aiokafka import ConsumerRecord

from services.sla import policy
from shared.caselog.store import lock_cases, read_case
from shared.clock import FrozenClock
from shared.contracts import case_events as ce
from shared.contracts.base import Contract
from shared.contracts.case_events import CaseSolvedEvent
from shared.contracts.inbound import CustomerIdentity
from shared.events import CaseEvent, Decision
from shared.infra.local import Endpoints
from shared.runtime import Route, ServiceRuntime
from shared.settings import Settings
from tests.integration.test_escalation_delivery_db import breach, hook, load
from tests.integration.test_sla_clocks_db import contact
from tests.support.escalation_fixtures import EscalationHarness, app_pool
from tests.support.kafka import cloudevent_headers, wait_for
from tests.support.sla_fixtures import SlaHarness
from tests.unit.test_sla_core import POLICY

pytestmark = pytest.mark.integration
POL = policy.load_text(json.dumps(POLICY))
T = TypeVar("T")
START = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


@pytest.fixture
async def pool(endpoints: Endpoints) -> AsyncIterator[asyncpg.Pool]:
    async with app_pool(endpoints) as created:
        yield created


async def waiting_on_a_lock(db: asyncpg.Connection, pid: int | None = None) -> bool:
    """Whether a backend (other than the test's own) waits for an advisory lock."""
    return bool(await db.fetchval(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        " AND ($1::int IS NULL OR pid <> $1)", pid))


async def contend(endpoints: Endpoints, app_db: asyncpg.Connection, held: str, then: str,
                  work: Coroutine[Any, Any, T]) -> T:
    """Hold `held`'s log lock on a connection of our own, start `work`, wait until it waits
    for a lock, then take `then`'s too and commit; `work`'s result.

    `work` locking in order waits for `held` holding nothing else: `then` is granted at once.
    Holding `then` while it waits for `held` would be a deadlock: PostgreSQL aborts one of us
    (after deadlock_timeout), `work` having waited longer."""
    holder = await asyncpg.connect(endpoints.database_url)
    try:
        me = holder.get_server_pid()
        async with holder.transaction():
            await lock_cases(holder, [held])
            running = asyncio.create_task(work)
            await wait_for(lambda: waiting_on_a_lock(app_db, me), timeout=30,
                           what=f"the code under test to wait for {held}'s lock")
            await lock_cases(holder, [then])
        return await running
    finally:
        await holder.close()


def two_cases(prefix: str) -> tuple[str, str]:
    """Two case ids, the first sorting before the second."""
    tag = uuid.uuid4().hex[:12]
    return f"{prefix}-{tag}-a", f"{prefix}-{tag}-b"


async def test_the_sla_timer_locks_every_case_it_fires_before_its_first_append(
    pool: asyncpg.Pool, endpoints: Endpoints, app_db: asyncpg.Connection
) -> None:
    early, late = two_cases("lock-sla")
    clock = FrozenClock(START)
    sla = SlaHarness(pool, clock, POL)
    # The later case's chat comes first, so its clock is due first: the timer's appends go
    # `late`, then `early`, each case in its own trace.
    await sla.feed("contact.received", contact(late, START, channel="chat"))
    clock.advance(timedelta(seconds=30))
    await sla.feed("contact.received", contact(early, clock.now(), channel="chat"))
    for n, case_id in enumerate((late, early)):
        await app_db.execute("UPDATE sla_clock SET traceparent = $2 WHERE case_id = $1",
                             case_id, f"00-{uuid.uuid4().hex}-{n + 1:016x}-01")
    clock.advance(timedelta(minutes=10))  # both clocks breached

    assert await contend(endpoints, app_db, early, late, sla.fire()) >= 2
    for case_id in (early, late):
        types = [r.type for r in await read_case(app_db, case_id)]
        assert "sla.breached" in types, (case_id, types)


async def test_the_escalation_timer_locks_every_case_it_fires_before_its_first_append(
    pool: asyncpg.Pool, endpoints: Endpoints, app_db: asyncpg.Connection
) -> None:
    clock = FrozenClock(START)
    h = EscalationHarness(pool, clock, load({"good": hook("http://127.0.0.1:9/good")},
                                            ["good"]))
    early, late = two_cases("lock-esc")
    for case_id in (early, late):
        await h.log(case_id, "case.opened", ce.CaseOpened(
            case_id=case_id, channel="email", subject="Charged twice", opened_at=START,
            customer=CustomerIdentity(email="maya@example.com")), source="switchboard/intake")
    await breach(h, late)  # its acknowledgement timeout passes first
    clock.advance(timedelta(minutes=1))
    await breach(h, early)
    clock.advance(timedelta(minutes=15))  # both unacknowledged: level 2 for each

    assert await contend(endpoints, app_db, early, late, h.fire()) >= 2
    for case_id in (early, late):
        types = [r.type for r in await read_case(app_db, case_id)]
        assert types.count("case.escalated") == 1, (case_id, types)
        assert types.count("escalation.reescalated") == 1, (case_id, types)  # level 2, by the timer


class _Solves:
    """A route whose records each solve the case their key names (a test's own handler: what
    is tested is the runtime's transaction around it)."""

    topic = "test.lock-order"

    @staticmethod
    async def handle(conn: asyncpg.Connection, env: Any, payload: Any, now: datetime) -> Decision:
        case_id = payload.case_id
        return Decision(events=(CaseEvent.derived(
            env.id, "solved", case_id, "case.solved", now,
            CaseSolvedEvent(case_id=case_id, agent_id="agent-ada", at=now)),))


def _record(case_id: str, offset: int) -> ConsumerRecord[Any, Any]:
    value = CaseSolvedEvent(case_id=case_id, agent_id="agent-ada",
                            at=datetime.now(UTC)).model_dump_json().encode()
    headers = tuple((k, v.encode()) for k, v in cloudevent_headers("case.solved").items())
    return ConsumerRecord(topic=_Solves.topic, partition=0, offset=offset, timestamp=0,
                          timestamp_type=0, key=case_id.encode(), value=value, checksum=None,
                          serialized_key_size=-1, serialized_value_size=-1, headers=headers)


async def test_a_batch_that_loses_a_deadlock_goes_again_whole_not_record_by_record(
    pool: asyncpg.Pool, endpoints: Endpoints, app_db: asyncpg.Connection,
    caplog: pytest.LogCaptureFixture
) -> None:
    first, second = two_cases("lock-batch")
    rt = ServiceRuntime(name="lockorder", settings=Settings(), clock=FrozenClock(START))
    rt._pool = pool
    models: dict[str, type[Contract]] = {"case.solved": CaseSolvedEvent}
    route = Route(_Solves.topic, models, {"case.solved": _Solves.handle})
    # Appended record by record (not deferred): the batch locks `first` with its first record
    # and waits for `second` at its second, which the test holds; the test then asks for
    # `first`. PostgreSQL aborts the batch's transaction, which waited longer.
    batch = [_record(first, 1), _record(second, 2)]
    caplog.set_level(logging.WARNING, logger="shared.runtime")
    try:
        await contend(endpoints, app_db, second, first, rt.process_batch(batch, route))
    finally:
        rt._pool = None
    for case_id in (first, second):
        assert [r.type for r in await read_case(app_db, case_id)] == ["case.solved"]
    messages = [r.getMessage() for r in caplog.records]
    assert any("lost a conflict" in m and "40P01" in m for m in messages), messages
    assert not any("one record at a time" in m for m in messages), messages
    assert rt.processed == 2 and rt.dead_lettered == 0
