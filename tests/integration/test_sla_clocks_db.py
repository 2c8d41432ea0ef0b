"""The SLA handlers and timer on the real PostgreSQL (no Kafka): durable, exact, never doubled.

Time is a FrozenClock except in the lateness test, which measures the real timer loop.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone

import asyncpg
import pytest

from services.sla import app, policy
from shared.caselog.store import read_case, verify_case
from shared.clock import FrozenClock, SystemClock
from shared.contracts import case_events as ce
from shared.contracts.inbound import CustomerIdentity
from shared.infra.local import Endpoints
from tests.support.kafka import wait_for
from tests.support.sla_fixtures import SlaHarness
from tests.unit.test_sla_core import POLICY

pytestmark = pytest.mark.integration
POL = policy.load_text(json.dumps(POLICY))
START = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)  # Monday 09:00 in Berlin


@pytest.fixture
async def pool(endpoints: Endpoints) -> AsyncIterator[asyncpg.Pool]:
    created = await asyncpg.create_pool(endpoints.database_url, min_size=1, max_size=4)
    assert created is not None
    yield created
    await created.close()


def contact(case_id: str, at: datetime, channel: str = "email") -> ce.ContactReceived:
    return ce.ContactReceived(case_id=case_id, contact_id=f"c-{uuid.uuid4()}", channel=channel,  # type: ignore[arg-type]
                              source_type="x", customer=CustomerIdentity(email="m@example.com"),
                              text="help", received_at=at)


async def types_of(db: asyncpg.Connection, case_id: str) -> list[str]:
    return [r.type for r in await read_case(db, case_id)]


async def test_contact_then_reply_start_and_meet_and_a_redelivery_doubles_nothing(
    pool: asyncpg.Pool, app_db: asyncpg.Connection
) -> None:
    case_id, clock = f"sla-db-{uuid.uuid4()}", FrozenClock(START)
    sla = SlaHarness(pool, clock, POL)
    first = contact(case_id, START)
    await sla.feed("contact.received", first, event_id="in-1-" + case_id)
    await sla.feed("contact.received", first, event_id="in-1-" + case_id)  # redelivered
    clock.advance(timedelta(minutes=20))
    reply = ce.ReplySent(case_id=case_id, agent_id="ada", text="hi", at=clock.now())
    await sla.feed("reply.sent", reply, event_id="in-2-" + case_id)
    await sla.feed("reply.sent", reply, event_id="in-2-" + case_id)  # redelivered
    counts = Counter(await types_of(app_db, case_id))
    # first response and resolution started; first response met; periodic update cycle 1
    assert counts == {"sla.started": 3, "sla.met": 1}
    states = {r["metric"]: r["state"] for r in await app_db.fetch(
        "SELECT metric, state FROM sla_clock WHERE case_id = $1", case_id)}
    assert states == {"first_response": "met", "resolution": "running",
                      "periodic_update": "running"}
    assert await verify_case(app_db, case_id) is None


async def test_the_timer_fires_warnings_and_breaches_once_with_their_true_instants(
    pool: asyncpg.Pool, app_db: asyncpg.Connection
) -> None:
    case_id, clock = f"sla-db-{uuid.uuid4()}", FrozenClock(START)
    sla = SlaHarness(pool, clock, POL)
    await sla.feed("contact.received", contact(case_id, START))
    clock.advance(timedelta(days=1))  # the service was "down": everything came due meanwhile
    while await sla.fire():
        pass
    await sla.fire()
    rows = [r for r in await read_case(app_db, case_id)
            if r.payload.get("metric") == "first_response"]
    assert [r.type for r in rows] == ["sla.started", "sla.warning", "sla.warning", "sla.breached"]
    started, w75, w10, breach = (r.payload for r in rows)
    due = datetime.fromisoformat(started["due_at"])
    assert datetime.fromisoformat(breach["breached_at"]) == due  # 14:00 Berlin (lunch 12-13)
    assert datetime.fromisoformat(w10["warned_at"]) == due - timedelta(minutes=10)
    assert datetime.fromisoformat(w75["warned_at"]) == START + timedelta(hours=3)
    assert breach["overdue_seconds"] > 0


async def test_two_timers_racing_over_many_due_clocks_fire_each_once(
    pool: asyncpg.Pool, endpoints: Endpoints, app_db: asyncpg.Connection
) -> None:
    clock = FrozenClock(START)
    other_pool = await asyncpg.create_pool(endpoints.database_url, min_size=1, max_size=2)
    assert other_pool is not None
    try:
        a, b = SlaHarness(pool, clock, POL), SlaHarness(other_pool, clock, POL)
        cases = [f"sla-race-{uuid.uuid4()}" for _ in range(40)]
        for case_id in cases:
            await a.feed("contact.received", contact(case_id, START, channel="chat"))
        clock.advance(timedelta(minutes=5))

        async def drain(h: SlaHarness) -> None:
            while await h.fire():
                pass
        await asyncio.gather(drain(a), drain(b))
    finally:
        await other_pool.close()
    for case_id in cases:
        counts = Counter(await types_of(app_db, case_id))
        assert counts["sla.breached"] == 1 and counts["sla.warning"] == 1, counts


async def test_pending_customer_pauses_and_the_customer_reply_resumes(
    pool: asyncpg.Pool, app_db: asyncpg.Connection
) -> None:
    case_id, clock = f"sla-db-{uuid.uuid4()}", FrozenClock(START)
    sla = SlaHarness(pool, clock, POL)
    await sla.feed("contact.received", contact(case_id, START))
    clock.advance(timedelta(hours=1))
    await sla.feed("reply.sent", ce.ReplySent(case_id=case_id, agent_id="ada", text="?",
                                              at=clock.now()))
    await sla.feed("case.status_changed", ce.CaseStatusChanged(
        case_id=case_id, status="pending_customer", at=clock.now()))
    clock.advance(timedelta(days=7))
    while await sla.fire():  # other tests' clocks may fire; this case's are paused
        pass
    assert not {"sla.warning", "sla.breached"} & set(await types_of(app_db, case_id))
    await sla.feed("contact.received", contact(case_id, clock.now()))
    types = await types_of(app_db, case_id)
    assert types.count("sla.paused") == 2 and types.count("sla.resumed") == 2
    resolution = await app_db.fetchrow(
        "SELECT state, elapsed_seconds FROM sla_clock WHERE case_id = $1"
        " AND metric = 'resolution'", case_id)
    assert resolution is not None
    assert (resolution["state"], resolution["elapsed_seconds"]) == ("running", 3600)


async def test_the_timer_loop_fires_within_a_second_of_the_due_instant(
    pool: asyncpg.Pool, app_db: asyncpg.Connection
) -> None:
    """A clock created while the loop sleeps on a far instant wakes it.

    The loop would otherwise sleep 30 s; the breach logged well before that shows the wake-up.
    (Lateness itself is measured by `benchmarks/sla_timers.py`, not asserted here.)"""
    sla = SlaHarness(pool, FrozenClock(START), policy.with_channel_first_response(
        POL, {"voice": 2}))
    sla.clock = SystemClock()  # type: ignore[assignment]
    sla.settings = sla.settings.model_copy(update={"sla_timer_max_idle_seconds": 30.0})
    loop = asyncio.create_task(app.timer_loop(sla.policy, sla.timer)(sla.runtime))
    try:
        await wait_for(lambda: sla.timer._wake_at is not None, what="the loop to sleep")
        case_id = f"sla-loop-{uuid.uuid4()}"
        await sla.feed("contact.received", contact(case_id, datetime.now(UTC), "voice"))
        deadline = time.monotonic() + 10
        while "sla.breached" not in await types_of(app_db, case_id):
            assert time.monotonic() < deadline, "no breach within 10 s"
            await asyncio.sleep(0.05)
    finally:
        loop.cancel()
    rows = await read_case(app_db, case_id)
    for kind in ("sla.warning", "sla.breached"):
        row = next(r for r in rows if r.type == kind)
        instant = row.payload["warned_at" if kind == "sla.warning" else "breached_at"]
        lateness = (row.time - datetime.fromisoformat(instant)).total_seconds()
        assert 0 <= lateness < 10.0, (kind, lateness)


async def test_saved_clocks_read_back_equal_and_keep_the_trace_that_started_them(
    app_db: asyncpg.Connection
) -> None:
    """`save_clocks` writes a batch in one statement over arrays: every column, warn_at of
    any length (none, one, several), microseconds and another offset than UTC, come back
    equal; an update keeps the traceparent of the contact that started the clock."""
    from dataclasses import replace

    from services.sla.core import SlaClock

    case_id = f"sla-save-{uuid.uuid4()}"
    base = SlaClock(clock_id=f"{case_id}:first_response:1", case_id=case_id,
                    metric="first_response", cycle=1, policy="p1", rule="r", calendar="c",
                    time_basis="business", target_seconds=3600.0, started_at=START,
                    due_at=START + timedelta(hours=1), state="running", elapsed_seconds=0.5,
                    running_since=START, warnings=(("half", 1800.0), ("10m", 600.0)),
                    warn_at=(START + timedelta(minutes=30), START + timedelta(minutes=50)))
    clocks = [base,
              replace(base, clock_id=f"{case_id}:resolution:1", metric="resolution",
                      warnings=(), warn_at=()),
              replace(base, clock_id=f"{case_id}:next_response:1", metric="next_response",
                      warnings=(("half", 1800.0),),
                      warn_at=(datetime(2026, 11, 23, 9, 30, 0, 123456,
                                        tzinfo=timezone(timedelta(hours=1))),))]
    async with app_db.transaction():
        await app.save_clocks(app_db, clocks, ["00-a-1", None, "00-c-3"])
    rows = {r["clock_id"]: r for r in await app_db.fetch(
        f"SELECT {app._COLUMNS}, next_fire_at, traceparent FROM sla_clock WHERE case_id = $1",
        case_id)}
    for clock in clocks:
        assert app.clock_from_row(rows[clock.clock_id]) == clock
        assert rows[clock.clock_id]["next_fire_at"] == clock.next_fire_at
    assert [rows[c.clock_id]["traceparent"] for c in clocks] == ["00-a-1", None, "00-c-3"]
    met = replace(base, state="met", closed_at=START + timedelta(minutes=5), warn_at=())
    async with app_db.transaction():
        await app.save_clocks(app_db, [met], "00-other-9")
    row = await app_db.fetchrow(
        f"SELECT {app._COLUMNS}, traceparent FROM sla_clock WHERE clock_id = $1", met.clock_id)
    assert app.clock_from_row(row) == met and row["traceparent"] == "00-a-1"
