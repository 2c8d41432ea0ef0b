"""Intake appends a batch's events once, at its end (`defer_appends`): later records of the
same batch must still decide as if each earlier one were already in the log.

The records go through the runtime's own `process_batch` with intake's wiring (its routes,
handler and transaction hooks), on the real database; what is asserted is the case log.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from aiokafka import ConsumerRecord

from services.intake.app import wire
from shared.caselog.store import append_events, read_case, verify_case
from shared.clock import FrozenClock
from shared.contracts.case_events import CaseSolvedEvent, ReplySent
from shared.contracts.topics import INBOUND_CHAT, INBOUND_EMAIL
from shared.events import CaseEvent
from shared.infra.local import Endpoints
from shared.runtime import Route, ServiceRuntime
from shared.settings import Settings
from tests.support import contacts
from tests.support.cases import case_of
from tests.support.kafka import cloudevent_headers

pytestmark = pytest.mark.integration

_OFFSET = iter(range(10**9, 2 * 10**9))


def record(body: dict[str, Any]) -> ConsumerRecord[Any, Any]:
    headers = tuple((k, v.encode()) for k, v in cloudevent_headers("email.received").items())
    return ConsumerRecord(topic=INBOUND_EMAIL, partition=0, offset=next(_OFFSET), timestamp=0,
                          timestamp_type=0, key=b"k", value=json.dumps(body).encode(),
                          checksum=None, serialized_key_size=-1, serialized_value_size=-1,
                          headers=headers)


@pytest.fixture
async def wired(endpoints: Endpoints) -> AsyncIterator[tuple[ServiceRuntime, dict[str, Route]]]:
    """Intake's runtime and its routes by topic."""
    rt = ServiceRuntime(name="intake", settings=Settings(intake_parse_workers=0),
                        clock=FrozenClock(datetime.now(UTC)))
    routes: list[Route] = []
    rt.subscribe = routes.append  # type: ignore[method-assign,assignment]  # no broker: batches by hand
    wire(rt)
    rt._pool = await asyncpg.create_pool(endpoints.database_url, min_size=1, max_size=2)
    try:
        yield rt, {r.topic: r for r in routes}
    finally:
        await rt._pool.close()
        rt._pool = None


@pytest.fixture
def intake(wired: tuple[ServiceRuntime, dict[str, Route]]) -> tuple[ServiceRuntime, Route]:
    return wired[0], wired[1][INBOUND_EMAIL]


def mail(tag: str, n: int, reply_to: int | None = None) -> dict[str, Any]:
    return contacts.email_event(contacts.raw_email(
        f"<{tag}.{n}@mail.example>", f"Order {tag}", f"Message {n} about my order",
        sender=f"Maya <maya-{tag}@example.com>",
        in_reply_to=f"<{tag}.{reply_to}@mail.example>" if reply_to is not None else None))


async def test_a_reply_to_a_case_opened_earlier_in_the_same_batch_joins_it(
        intake: tuple[ServiceRuntime, Route], app_db: asyncpg.Connection) -> None:
    rt, route = intake
    tag = uuid.uuid4().hex[:10]
    await rt.process_batch([record(mail(tag, 1)), record(mail(tag, 2, reply_to=1))], route)
    case_id = await case_of(app_db, f"email:<{tag}.1@mail.example>")
    rows = await read_case(app_db, case_id)
    assert [r.type for r in rows] == ["case.opened", "contact.received", "contact.received"]
    assert [r.seq for r in rows] == [1, 2, 3]
    assert await verify_case(app_db, case_id) is None
    # what will be published on cases.events is the logged text, byte for byte
    queued = {json.loads(r["headers"])["ce_id"]: bytes(r["value"]) for r in await app_db.fetch(
        "SELECT headers, value FROM outbox WHERE service = 'intake' AND key = $1",
        case_id.encode())}
    assert queued == {str(r.event_id): r.data.encode() for r in rows}


async def test_two_replies_in_one_batch_reopen_a_solved_case_once(
        intake: tuple[ServiceRuntime, Route], app_db: asyncpg.Connection) -> None:
    rt, route = intake
    tag = uuid.uuid4().hex[:10]
    await rt.process_batch([record(mail(tag, 1))], route)
    case_id = await case_of(app_db, f"email:<{tag}.1@mail.example>")
    now = datetime.now(UTC)
    solved = CaseEvent.derived(f"test-solve-{tag}", "case.solved", case_id, "case.solved", now,
                               CaseSolvedEvent(case_id=case_id, agent_id="agent-ada", at=now))
    async with app_db.transaction():
        await append_events(app_db, [solved], source="test/router", trace_id=None)

    await rt.process_batch([record(mail(tag, 2, reply_to=1)), record(mail(tag, 3, reply_to=1))],
                           route)
    rows = await read_case(app_db, case_id)
    assert [r.type for r in rows] == ["case.opened", "contact.received", "case.solved",
                                      "case.reopened", "contact.received", "contact.received"]
    assert [r.seq for r in rows] == list(range(1, 7))
    assert await verify_case(app_db, case_id) is None
    # each new event queued once for publishing (no relay runs here to take them)
    queued = await app_db.fetchval(
        "SELECT count(*) FROM outbox WHERE service = 'intake' AND key = $1", case_id.encode())
    assert queued == 5


async def test_the_directory_names_the_customer_in_the_same_look_as_the_thread_keys(
        intake: tuple[ServiceRuntime, Route], app_db: asyncpg.Connection,
        endpoints: Endpoints) -> None:
    """The directory entry, the dedup key and the thread keys come in one round trip
    (`_first_look`): a known address gets its customer id and tier; a redelivered message is
    a duplicate; an unknown address gets none."""
    rt, route = intake
    tag = uuid.uuid4().hex[:10]
    owner = await asyncpg.connect(endpoints.database_admin_url)
    try:
        await owner.execute(
            "INSERT INTO intake_customer (customer_id, names, emails, tier, verified)"
            " VALUES ($1, $2, $3, 'gold', true)", f"cust-{tag}", ["Maya Lind"],
            [f"maya-{tag}@example.com"])
    finally:
        await owner.close()
    stranger = contacts.email_event(contacts.raw_email(
        f"<{tag}.9@mail.example>", f"Other {tag}", "Hello", sender=f"x-{tag}@example.com"))
    await rt.process_batch([record(mail(tag, 1)), record(mail(tag, 1)), record(stranger)], route)
    case_id = await case_of(app_db, f"email:<{tag}.1@mail.example>")
    rows = await read_case(app_db, case_id)
    assert [r.type for r in rows] == ["case.opened", "contact.received"]  # the copy: nothing
    customer = json.loads(rows[0].data)["customer"]
    assert (customer["external_id"], customer["tier"]) == (f"cust-{tag}", "gold")
    assert customer["verified"] is False  # the directory does not prove who sent it
    other = await read_case(app_db, await case_of(app_db, f"email:<{tag}.9@mail.example>"))
    assert json.loads(other[0].data)["customer"].get("external_id") is None


def chat(session: str, n: int, text: str) -> ConsumerRecord[Any, Any]:
    headers = tuple((k, v.encode()) for k, v in cloudevent_headers("chat.message").items())
    body = contacts.chat_message(session, text, message_id=f"m{n}")
    body["customer"]["email"] = f"{session}@example.org"  # no other test's open case to join
    return ConsumerRecord(topic=INBOUND_CHAT, partition=0, offset=next(_OFFSET), timestamp=0,
                          timestamp_type=0, key=session.encode(), value=json.dumps(body).encode(),
                          checksum=None, serialized_key_size=-1, serialized_value_size=-1,
                          headers=headers)


async def test_a_chat_burst_ends_with_an_agents_reply(
        wired: tuple[ServiceRuntime, dict[str, Route]], app_db: asyncpg.Connection) -> None:
    """Messages in a burst join the session's contact (`_joined`, one round trip with whether
    the case is solved); after an agent's reply the next message is a new contact."""
    rt, routes = wired
    chats = routes[INBOUND_CHAT]
    session = f"s-{uuid.uuid4().hex[:10]}"
    await rt.process_batch([chat(session, 0, "hi"), chat(session, 1, "my parcel is late")],
                           chats)
    case_id = await case_of(app_db, f"chat:{session}")
    types = [r.type for r in await read_case(app_db, case_id)]
    assert types.count("contact.received") == 1 and types.count("contact.text_added") == 1
    now = datetime.now(UTC)
    reply = CaseEvent.derived(f"test-reply-{session}", "reply.sent", case_id, "reply.sent", now,
                              ReplySent(case_id=case_id, agent_id="agent-ada", at=now,
                                        text="Let me check"))
    async with app_db.transaction():
        await append_events(app_db, [reply], source="test/router", trace_id=None)
    await rt.process_batch([chat(session, 2, "thanks, any news?")], chats)
    types = [r.type for r in await read_case(app_db, case_id)]
    assert types.count("contact.received") == 2  # a new contact after the reply
    assert await verify_case(app_db, case_id) is None
