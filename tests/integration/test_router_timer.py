"""The router's timer on the real database: an offer nobody answers expires once, in the log,
in the router's tables and on its floor; a timer pass the database refuses (read-only sessions)
leaves all three as they were, and the next pass expires the offer exactly once.

Records go through the runtime's own `process_batch` with the router's wiring (no broker);
the floor starts empty (no `lead`), so it holds only this test's agent and case.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiokafka import ConsumerRecord

from services.router.app import RouterApp, wire
from shared.caselog.store import read_case
from shared.clock import FrozenClock
from shared.contracts.topics import AGENTS, CASE_EVENTS
from shared.infra.local import Endpoints
from shared.runtime import Route, ServiceRuntime
from shared.settings import Settings
from tests.support.kafka import cloudevent_headers

pytestmark = pytest.mark.integration

_OFFSET = iter(range(10**9, 2 * 10**9))
SKILLS = ("general", "orders", "billing", "accounts", "technical")


def record(topic: str, type_: str, key: str, body: dict[str, Any]) -> ConsumerRecord[Any, Any]:
    headers = tuple((k, v.encode()) for k, v in
                    {**cloudevent_headers(type_), "ce_subject": key}.items())
    return ConsumerRecord(topic=topic, partition=0, offset=next(_OFFSET), timestamp=0,
                          timestamp_type=0, key=key.encode(), value=json.dumps(body).encode(),
                          checksum=None, serialized_key_size=-1, serialized_value_size=-1,
                          headers=headers)


@pytest.fixture
async def router(endpoints: Endpoints) -> AsyncIterator[tuple[ServiceRuntime, RouterApp,
                                                               dict[str, Route]]]:
    rt = ServiceRuntime(name="router", settings=Settings(),
                        clock=FrozenClock(datetime.now(UTC)))
    routes: list[Route] = []
    rt.subscribe = routes.append  # type: ignore[method-assign,assignment]  # batches by hand
    wire(rt)
    app = rt.hooks
    assert isinstance(app, RouterApp)
    rt._pool = await asyncpg.create_pool(endpoints.database_url, min_size=1, max_size=2)
    # the epoch the database holds, so the fence lets this app write
    app.epoch = await rt._pool.fetchval("SELECT epoch FROM router_leader WHERE id = 1")
    try:
        yield rt, app, {r.topic: r for r in routes}
    finally:
        await rt._pool.close()
        rt._pool = None


async def offered_case(rt: ServiceRuntime, routes: dict[str, Route], tag: str) -> tuple[str, str]:
    """An agent logs in, a chat arrives and is offered to them: (case id, agent id)."""
    agent_id, case_id = f"agent-timer-{tag}", f"case-timer-{tag}"
    now = rt.clock.now()
    await rt.process_batch([record(AGENTS, "agent.profile_changed", agent_id, {
        "agent_id": agent_id, "name": agent_id, "authority_tier": 1, "languages": ["en"],
        "skills": [{"skill": s, "proficiency": 3} for s in SKILLS],
        "capacity": {"email": 0, "chat": 1, "voice": 0}, "presence": "available",
        "changed_at": now.isoformat()})], routes[AGENTS])
    await rt.process_batch([record(CASE_EVENTS, "contact.received", case_id, {
        "case_id": case_id, "contact_id": f"contact-{tag}", "channel": "chat",
        "source_type": "chat.message", "customer": {"name": "Maya"},
        "text": "Hello, my order has not arrived yet. Could you help me please?",
        "received_at": now.isoformat()})], routes[CASE_EVENTS])
    return case_id, agent_id


async def expired(db: asyncpg.Connection, case_id: str) -> list[Any]:
    return [r for r in await read_case(db, case_id) if r.type == "assignment.expired"]


async def test_an_unanswered_offer_expires_once_in_the_log_the_tables_and_the_floor(
        router: tuple[ServiceRuntime, RouterApp, dict[str, Route]],
        app_db: asyncpg.Connection) -> None:
    rt, app, routes = router
    case_id, agent_id = await offered_case(rt, routes, uuid.uuid4().hex[:10])
    [offer] = [o for o in app.floor.offers.values() if o.case_id == case_id]
    assert offer.agent_id == agent_id and offer.state == "offered"

    assert await app.tick() == 0  # not due yet: nothing decided, nothing written
    assert await expired(app_db, case_id) == []

    assert isinstance(rt.clock, FrozenClock)
    rt.clock.advance(offer.expires_at - rt.clock.now() + timedelta(seconds=1))
    assert await app.tick() > 0
    [event] = await expired(app_db, case_id)
    assert json.loads(event.data)["offer_id"] == offer.offer_id
    assert await app_db.fetchval("SELECT state FROM router_offer WHERE offer_id = $1",
                                 offer.offer_id) == "expired"
    assert app.floor.offers.get(offer.offer_id) is None  # closed on the floor too
    await app.tick()  # a later pass has nothing of it left to expire
    assert len(await expired(app_db, case_id)) == 1


async def test_a_timer_pass_whose_transaction_fails_changes_nothing_and_the_next_one_expires(
        router: tuple[ServiceRuntime, RouterApp, dict[str, Route]],
        app_db: asyncpg.Connection, endpoints: Endpoints) -> None:
    rt, app, routes = router
    case_id, _ = await offered_case(rt, routes, uuid.uuid4().hex[:10])
    [offer] = [o for o in app.floor.offers.values() if o.case_id == case_id]
    assert isinstance(rt.clock, FrozenClock)
    rt.clock.advance(offer.expires_at - rt.clock.now() + timedelta(seconds=1))

    # The database refuses the pass's writes: its sessions are read-only for this one pass.
    writable = rt._pool
    rt._pool = await asyncpg.create_pool(
        endpoints.database_url, min_size=1, max_size=1,
        server_settings={"default_transaction_read_only": "on"})
    try:
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
            await app.tick()
    finally:
        await rt._pool.close()
        rt._pool = writable
    assert app.floor.offers[offer.offer_id].state == "offered"  # the floor rolled back
    assert await expired(app_db, case_id) == []
    assert await app_db.fetchval("SELECT state FROM router_offer WHERE offer_id = $1",
                                 offer.offer_id) == "offered"

    assert await app.tick() > 0
    assert len(await expired(app_db, case_id)) == 1
    assert await app_db.fetchval("SELECT state FROM router_offer WHERE offer_id = $1",
                                 offer.offer_id) == "expired"
