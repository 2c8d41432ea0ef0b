"""Escalation's batch probe on the real PostgreSQL: a batch of case events goes through the
runtime's own `process_batch` with the escalation service's wiring (no broker). Its inputs'
probes are taken in one round trip before the first record; an input whose case an earlier
input of the same batch changed probes again and sees what that input wrote.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from aiokafka import ConsumerRecord

from services.escalation import app
from shared.caselog.store import append_events, read_case
from shared.clock import FrozenClock
from shared.contracts import case_events as ce
from shared.contracts.base import Contract
from shared.contracts.inbound import CustomerIdentity
from shared.contracts.topics import CASE_EVENTS
from shared.events import CaseEvent
from shared.infra.local import Endpoints
from shared.runtime import Route, ServiceRuntime
from shared.settings import Settings
from tests.support.kafka import cloudevent_headers

pytestmark = pytest.mark.integration

_OFFSET = iter(range(10**9, 2 * 10**9))


@pytest.fixture
async def escalation(endpoints: Endpoints) -> AsyncIterator[tuple[ServiceRuntime, Route]]:
    rt = ServiceRuntime(name="escalation", settings=Settings(),
                        clock=FrozenClock(datetime.now(UTC)))
    routes: list[Route] = []
    rt.subscribe = routes.append  # type: ignore[method-assign,assignment]  # batches by hand
    app.wire(rt)
    assert isinstance(rt.hooks, app.Probes)
    rt._pool = await asyncpg.create_pool(endpoints.database_url, min_size=1, max_size=2)
    try:
        yield rt, next(r for r in routes if r.topic == CASE_EVENTS)
    finally:
        await rt._pool.close()
        rt._pool = None


async def logged(rt: ServiceRuntime, case_id: str, type_: str, payload: Contract,
                 source: str = "switchboard/router") -> ConsumerRecord[Any, Any]:
    """The event appended to the log, as its emitter would, and its record on cases.events."""
    event = CaseEvent(uuid.uuid4(), case_id, type_, rt.clock.now(), payload)
    async with rt.pool.acquire() as conn, conn.transaction():
        await append_events(conn, [event], source=source, trace_id=None)
    headers = {**cloudevent_headers(type_), "ce_id": str(event.event_id), "ce_subject": case_id,
               "ce_source": source}
    return ConsumerRecord(topic=CASE_EVENTS, partition=0, offset=next(_OFFSET), timestamp=0,
                          timestamp_type=0, key=case_id.encode(),
                          value=payload.model_dump_json().encode(), checksum=None,
                          serialized_key_size=-1, serialized_value_size=-1,
                          headers=tuple((k, v.encode()) for k, v in headers.items()))


async def opened(rt: ServiceRuntime, tag: str) -> str:
    case_id = f"esc-batch-{tag}-{uuid.uuid4().hex[:10]}"
    await logged(rt, case_id, "case.opened", ce.CaseOpened(
        case_id=case_id, channel="email", subject="Charged twice", opened_at=rt.clock.now(),
        customer=CustomerIdentity(email="maya@example.com")), source="switchboard/intake")
    return case_id


def angry(case_id: str) -> ce.CaseClassified:
    return ce.CaseClassified(case_id=case_id, skill="billing", queue="billing",
                             priority="high", language="en", confidence=0.9,
                             sentiment=-0.8, frustrated=True)


async def escalations(db: asyncpg.Connection, case_id: str) -> list[str]:
    return [r["state"] for r in await db.fetch(
        "SELECT state FROM escalation WHERE case_id = $1 ORDER BY opened_at", case_id)]


async def test_one_batch_opens_acknowledges_and_resolves_as_record_by_record_would(
        escalation: tuple[ServiceRuntime, Route], app_db: asyncpg.Connection) -> None:
    rt, route = escalation
    probes = rt.hooks
    assert isinstance(probes, app.Probes)
    a, b, c, d = [await opened(rt, tag) for tag in "abcd"]
    # b's and d's escalations exist before the batch
    for case_id in (b, d):
        await rt.process_batch([await logged(rt, case_id, "case.classified", angry(case_id))],
                               route)
        assert await escalations(app_db, case_id) == ["open"]

    batch = [
        # a: opened by its classification, then acknowledged by the assignment in the same
        # batch; the batch's probe of the assignment, taken before the first record, found no
        # escalation. The assignment probes again after the classification changed a (and the
        # classification, seeing the assignment later in the log, acknowledges it too).
        await logged(rt, a, "case.classified", angry(a)),
        await logged(rt, a, "case.assigned", ce.CaseAssigned(case_id=a, agent_id="agent-lee",
                                                             authority_tier=1)),
        # b: resolved, from the batch's probe
        await logged(rt, b, "case.solved", ce.CaseSolvedEvent(case_id=b, agent_id="agent-lee",
                                                              at=rt.clock.now())),
        # c: nothing to touch, nothing done
        await logged(rt, c, "case.assigned", ce.CaseAssigned(case_id=c, agent_id="agent-lee",
                                                             authority_tier=1)),
        # d: resolved, from the batch's probe (each input gets its own row of it)
        await logged(rt, d, "case.solved", ce.CaseSolvedEvent(case_id=d, agent_id="agent-lee",
                                                              at=rt.clock.now())),
    ]
    # The batch probe answers as each input's own probe would, before anything is decided.
    async with rt.pool.acquire() as conn:
        asked = [app.probe_of(probes.policy, *_decoded(rt, route, r)) for r in batch]
        together = await app.probe(conn, [p for p in asked if p is not None])
        alone = [(await app.probe(conn, [p]))[0] for p in asked if p is not None]
        assert [dict(r) for r in together] == [dict(r) for r in alone]
        assert [r["touched"] for r in together] == [False, True, False, True]

    await rt.process_batch(batch, route)
    assert await escalations(app_db, a) == ["acknowledged"]
    assert await escalations(app_db, b) == ["resolved"]
    assert await escalations(app_db, d) == ["resolved"]
    assert await escalations(app_db, c) == []
    types_a = Counter(r.type for r in await read_case(app_db, a))
    assert types_a["case.escalated"] == 1 and types_a["escalation.acknowledged"] == 1
    assert Counter(r.type for r in await read_case(app_db, b))["escalation.resolved"] == 1
    assert {r.type for r in await read_case(app_db, c)} == {"case.opened", "case.assigned"}

    await rt.process_batch(batch, route)  # redelivered: nothing decided twice
    assert Counter(r.type for r in await read_case(app_db, a)) == types_a


def _decoded(rt: ServiceRuntime, route: Route,
             record: ConsumerRecord[Any, Any]) -> tuple[Any, Any]:
    decoded = rt._decode(record, route)
    assert decoded is not None
    return decoded
