"""The walking skeleton end to end: real broker, real database, the four services as processes."""

from __future__ import annotations

import uuid
from collections import Counter

import asyncpg
import pytest

from shared.caselog.store import read_case, verify_case
from shared.contracts.dead_letter import DeadLetterHeaders
from shared.contracts.topics import (
    INBOUND_CHAT,
    INBOUND_EMAIL,
    INBOUND_VOICE,
    SUPERVISOR_NOTIFICATIONS,
    dlq,
)
from shared.infra.local import Endpoints
from tests.support import contacts
from tests.support.cases import case_of, types_of, wait_types
from tests.support.kafka import cloudevent_headers, publish, read_all, wait_for
from tests.support.services import ServiceProcesses

pytestmark = pytest.mark.integration

CARD = "4111 1111 1111 1111"


async def notifications_for(bootstrap: str, case_id: str) -> list[dict[str, object]]:
    records = await read_all(bootstrap, SUPERVISOR_NOTIFICATIONS)
    return [r.json for r in records if r.headers.get("ce_subject") == case_id]


async def test_email_chat_and_voice_become_routed_clocked_cases_and_the_breach_escalates(
    endpoints: Endpoints, services: ServiceProcesses, app_db: asyncpg.Connection
) -> None:
    tag = uuid.uuid4().hex[:10]
    message_id = f"<{tag}@mail.example.com>"
    raw = contacts.raw_email(message_id, "Refund for order 4411",
                             f"Hi, I was charged twice. My card is {CARD}, please refund one.")
    bootstrap = endpoints.kafka_bootstrap_servers
    await publish(bootstrap, INBOUND_EMAIL, contacts.email_event(raw),
                  cloudevent_headers("email.received"), key=message_id)
    await publish(bootstrap, INBOUND_CHAT,
                  contacts.chat_message(f"s-{tag}", "The app crashes at login, error 503"),
                  cloudevent_headers("chat.message"), key=f"s-{tag}")
    await publish(bootstrap, INBOUND_VOICE, contacts.call_started(f"c-{tag}"),
                  cloudevent_headers("call.started"), key=f"c-{tag}")

    email_case = await case_of(app_db, f"email:{message_id}")
    chat_case = await case_of(app_db, f"chat:s-{tag}")
    voice_case = await case_of(app_db, f"call:c-{tag}")
    routed = {"case.opened", "contact.received", "case.classified", "case.queued",
              "assignment.offered", "sla.started"}
    for case_id in (email_case, chat_case):
        types = await wait_types(app_db, case_id, routed)
        assert types[:2] == ["case.opened", "contact.received"]
        assert "sla.breached" not in types
    # Voice capacity is one call per agent: the call may be offered or wait in its queue.
    voice_types = await wait_types(
        app_db, voice_case, {"case.opened", "contact.received", "case.classified", "case.queued",
                             "sla.started", "sla.breached", "case.escalated",
                             "escalation.notified"})
    assert voice_types[:2] == ["case.opened", "contact.received"]
    assert voice_types.index("sla.started") < voice_types.index("sla.breached") \
        < voice_types.index("case.escalated") < voice_types.index("escalation.notified")

    for case_id in (email_case, chat_case, voice_case):
        rows = await read_case(app_db, case_id)
        assert [r.seq for r in rows] == list(range(1, len(rows) + 1))
        assert len({r.event_id for r in rows}) == len(rows)
        assert await verify_case(app_db, case_id) is None
    email_rows = await read_case(app_db, email_case)
    assert all(CARD not in r.data and "4111111111111111" not in r.data for r in email_rows)
    assert "****1111" in email_rows[1].data
    offered = next(r for r in email_rows if r.type == "assignment.offered")
    assert offered.payload["agent_id"] in ("agent-ada", "agent-chen")  # the billing agents

    notes = await wait_for(lambda: notifications_for(bootstrap, voice_case), what="notification")
    assert len(notes) == 1
    packet = notes[0]["packet"]
    assert isinstance(packet, dict)
    assert packet["case_id"] == voice_case
    assert packet["contacts"][0]["channel"] == "voice"
    assert packet["reason"] == "sla.breached:first_response"

    # One contact, one trace: every row of the voice case, written by four services, shares it.
    voice_rows = await read_case(app_db, voice_case)
    assert {r.source for r in voice_rows} == {
        "switchboard/intake", "switchboard/router", "switchboard/sla", "switchboard/escalation"}
    assert len({r.trace_id for r in voice_rows}) == 1 and voice_rows[0].trace_id


async def test_a_redelivered_inbound_event_doubles_nothing(
    endpoints: Endpoints, services: ServiceProcesses, app_db: asyncpg.Connection
) -> None:
    tag = uuid.uuid4().hex[:10]
    bootstrap = endpoints.kafka_bootstrap_servers
    headers = cloudevent_headers("call.started", event_id=f"evt-{tag}")
    await publish(bootstrap, INBOUND_VOICE, contacts.call_started(f"c-{tag}"), headers,
                  key=f"c-{tag}")
    case_id = await case_of(app_db, f"call:c-{tag}")
    await wait_types(app_db, case_id, {"escalation.notified", "case.queued"})

    await publish(bootstrap, INBOUND_VOICE, contacts.call_started(f"c-{tag}"), headers,
                  key=f"c-{tag}")
    # A later event on the same partition: once it is processed, so was the duplicate.
    marker = f"c-{tag}"
    await publish(bootstrap, INBOUND_VOICE,
                  {"call_id": marker, "ended_at": "2026-11-24T10:00:00+00:00",
                   "duration_seconds": 42.0},
                  cloudevent_headers("call.ended"), key=marker)
    await wait_types(app_db, case_id, {"contact.activity_recorded"})
    after = Counter(await types_of(app_db, case_id))
    # Timers (SLA warnings, routing steps) may add events meanwhile; the duplicate adds none.
    for once in ("case.opened", "contact.received", "sla.started", "sla.breached",
                 "case.escalated", "escalation.notified"):
        assert after[once] == 1, (once, after)
    notes = await wait_for(lambda: notifications_for(bootstrap, case_id), what="notification")
    assert len(notes) == 1


async def test_a_malformed_event_is_dead_lettered_and_the_next_one_is_processed(
    endpoints: Endpoints, services: ServiceProcesses, app_db: asyncpg.Connection
) -> None:
    tag = uuid.uuid4().hex[:10]
    bootstrap = endpoints.kafka_bootstrap_servers
    key = f"s-{tag}"
    await publish(bootstrap, INBOUND_CHAT, b"{not json", cloudevent_headers("chat.message"),
                  key=key)
    await publish(bootstrap, INBOUND_CHAT, {"session_id": key, "text": "missing fields"},
                  cloudevent_headers("chat.message"), key=key)
    await publish(bootstrap, INBOUND_CHAT, contacts.chat_message(key, "Where is my parcel?"),
                  cloudevent_headers("chat.message"), key=key)
    case_id = await case_of(app_db, f"chat:{key}")
    await wait_types(app_db, case_id, {"contact.received"})

    async def dead_letters() -> list[object] | None:
        found = [r for r in await read_all(bootstrap, dlq(INBOUND_CHAT))
                 if r.key == key.encode()]
        return found if len(found) >= 2 else None
    found = await wait_for(dead_letters, what="two dead letters")
    not_json, missing = found
    assert not_json.value == b"{not json"
    DeadLetterHeaders.model_validate(not_json.headers)
    assert "chat.message violates its schema" in not_json.headers["dlq_reason"]
    assert not_json.headers["dlq_source_topic"] == INBOUND_CHAT
    assert int(not_json.headers["dlq_source_offset"]) >= 0
    assert "message_id" in missing.headers["dlq_reason"]
    assert "sent_at" in missing.headers["dlq_reason"]


async def test_a_nul_character_is_cleaned_and_its_contact_handled_with_its_neighbours(
    endpoints: Endpoints, services: ServiceProcesses, app_db: asyncpg.Connection
) -> None:
    """A NUL character passes the schema but PostgreSQL refuses it (text and jsonb): intake
    removes it (issue 11), so the contact opens its case like the records around it, instead
    of being dead-lettered."""
    tag = uuid.uuid4().hex[:10]
    bootstrap = endpoints.kafka_bootstrap_servers
    key = f"batch-{tag}"
    sessions = [f"{key}-{n}" for n in range(3)]
    texts = ["My parcel is late", "bad \u0000 byte", "Refund please"]
    for session, text in zip(sessions, texts, strict=True):
        await publish(bootstrap, INBOUND_CHAT, contacts.chat_message(session, text),
                      cloudevent_headers("chat.message"), key=key)
    for session, text in zip(sessions, texts, strict=True):
        case_id = await case_of(app_db, f"chat:{session}")
        await wait_types(app_db, case_id, {"contact.received"})
        [received] = [r for r in await read_case(app_db, case_id) if r.type == "contact.received"]
        assert received.payload["text"] == text.replace("\u0000", "")
