"""Production intake end to end: real broker, real database, the services as processes.

One contact per channel and per front-end adapter; a thread across two mail clients; a reply to a
solved case; automated mail; duplicates; limits dead-lettered with a precise reason.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import asyncpg
import pytest

from services.intake.subjects import case_reference
from shared.caselog.store import append_events, read_case, verify_case
from shared.contracts.case_events import CaseSolvedEvent
from shared.contracts.topics import INBOUND_CHAT, INBOUND_EMAIL, INBOUND_VOICE, dlq
from shared.events import CaseEvent
from shared.infra.local import Endpoints
from tests.support import contacts
from tests.support.cases import case_of, stored_key, wait_types
from tests.support.intake_fixtures import fixture, load_jsonish, reply_fixture
from tests.support.kafka import cloudevent_headers, publish, read_all, wait_for
from tests.support.services import ServiceProcesses

pytestmark = pytest.mark.integration

CARD = "4111 1111 1111 1111"


async def assert_clean(db: asyncpg.Connection, case_id: str) -> None:
    rows = await read_case(db, case_id)
    assert [r.seq for r in rows] == list(range(1, len(rows) + 1))
    assert await verify_case(db, case_id) is None
    assert all(CARD not in r.data and CARD.replace(" ", "") not in r.data for r in rows)


async def send(endpoints: Endpoints, topic: str, type_: str, body: dict[str, Any] | bytes,
               key: str, event_id: str | None = None) -> None:
    await publish(endpoints.kafka_bootstrap_servers, topic, body,
                  cloudevent_headers(type_, event_id=event_id), key=key)


def now() -> str:
    return datetime.now(UTC).isoformat()


# --- email threading ---------------------------------------------------------------------------
async def test_a_thread_across_two_mail_clients_is_one_case_and_a_solved_case_reopens(
    endpoints: Endpoints, services: ServiceProcesses, app_db: asyncpg.Connection
) -> None:
    tag = uuid.uuid4().hex[:10]
    sender = f"Maya Patel <maya-{tag}@example.com>"
    first_id = f"<{tag}.1@mail.gmail.example>"
    # 1. Gmail: a new message with a card number.
    await send(endpoints, INBOUND_EMAIL, "email.received", contacts.email_event(
        contacts.raw_email(first_id, f"Refund for order {tag}",
                           f"I was charged twice, card {CARD}.", sender=sender)), key=tag)
    case_id = await case_of(app_db, f"email:{first_id}")
    # 2. Outlook: a reply by headers, quoting the first message.
    second_id = f"<{tag}.2@outlook.example>"
    await send(endpoints, INBOUND_EMAIL, "email.received", contacts.email_event(
        contacts.raw_email(second_id, f"AW: Refund for order {tag}",
                           "Any news?\n\n-----Original Message-----\nFrom: Maya\nSent: today\n"
                           f"Subject: Refund\n\ncard {CARD}", sender=sender,
                           in_reply_to=first_id)), key=tag)
    # 3. Outlook again, no headers: the same customer and normalised subject, inside the window.
    await send(endpoints, INBOUND_EMAIL, "email.received", contacts.email_event(
        contacts.raw_email(f"<{tag}.3@outlook.example>", f"RE: Refund for order {tag}",
                           "Hello?", sender=sender)), key=tag)
    types = await wait_types(app_db, case_id, ["case.opened", *["contact.received"] * 3])
    assert types.count("case.opened") == 1
    received = [r for r in await read_case(app_db, case_id) if r.type == "contact.received"]
    assert received[1].payload["text"] == "Any news?"
    assert "Original Message" in received[1].payload["full_text"]
    await assert_clean(app_db, case_id)

    # The case is solved (as the router records it); a reply by its token reopens it.
    solved = CaseEvent.derived(f"test-solve-{tag}", "case.solved", case_id, "case.solved",
                               datetime.now(UTC), CaseSolvedEvent(case_id=case_id,
                                                                  agent_id="agent-ada",
                                                                  at=datetime.now(UTC)))
    async with app_db.transaction():
        await append_events(app_db, [solved], source="test/router", trace_id=None)
    # Someone else with the token opens a case of their own, linked to this one (issue 11) …
    other_id = f"<{tag}.4@other.example>"
    await send(endpoints, INBOUND_EMAIL, "email.received", contacts.email_event(
        contacts.raw_email(other_id, f"Still broken [#{case_reference(case_id)}]",
                           "It happened again", sender=f"M. Patel <other-{tag}@example.net>")),
               key=tag)
    other_case = await case_of(app_db, f"email:{other_id}")
    assert other_case != case_id
    [opened] = [r for r in await read_case(app_db, other_case) if r.type == "case.opened"]
    assert opened.payload["related_case_id"] == case_id
    # … and the customer, from her own address on another client, reopens hers.
    await send(endpoints, INBOUND_EMAIL, "email.received", contacts.email_event(
        contacts.raw_email(f"<{tag}.5@other.example>",
                           f"Still broken [#{case_reference(case_id)}]", "It happened again",
                           sender=sender)), key=tag)
    types = await wait_types(app_db, case_id, ["case.solved", "case.reopened"])
    assert types.index("case.solved") < types.index("case.reopened")
    assert types[types.index("case.reopened") + 1] == "contact.received"


async def test_automated_mail_opens_no_case_and_duplicates_are_absorbed(
    endpoints: Endpoints, services: ServiceProcesses, app_db: asyncpg.Connection
) -> None:
    tag = uuid.uuid4().hex[:10]
    auto_id = f"<{tag}.ooo@mail.example>"
    await send(endpoints, INBOUND_EMAIL, "email.received", contacts.email_event(
        contacts.raw_email(auto_id, "Out of office", "I am away until Monday.",
                           headers={"Auto-Submitted": "auto-replied"})), key=tag)
    bounce = reply_fixture("talon", "standard_replies", "gmail.eml").read_bytes()
    bounce = b"Auto-Submitted: auto-generated\r\n" + bounce.replace(
        b"Message-ID:", b"X-Old:", 1)
    await send(endpoints, INBOUND_EMAIL, "email.received", contacts.email_event(bounce), key=tag)
    person_id = f"<{tag}.p@mail.example>"
    person = contacts.email_event(contacts.raw_email(person_id, f"Help {tag}", "My parcel is late"))
    await send(endpoints, INBOUND_EMAIL, "email.received", person, key=tag)
    # The same message again under a new front-end event id (a second gateway delivery).
    await send(endpoints, INBOUND_EMAIL, "email.received", person, key=tag)
    marker = f"<{tag}.m@mail.example>"
    await send(endpoints, INBOUND_EMAIL, "email.received", contacts.email_event(
        contacts.raw_email(marker, f"Other {tag}", "A marker after the rest")), key=tag)
    await case_of(app_db, f"email:{marker}")  # same partition: everything before is processed
    case_id = await case_of(app_db, f"email:{person_id}")
    # intake's own rows: the second delivery added nothing (router and sla rows may follow)
    assert [r.type for r in await read_case(app_db, case_id)
            if r.source == "switchboard/intake"] == ["case.opened", "contact.received"]
    assert await app_db.fetchval("SELECT count(*) FROM intake_thread WHERE thread_key = $1",
                                 stored_key(f"email:{auto_id}")) == 0


async def test_oversized_email_is_dead_lettered_with_a_precise_reason(
    endpoints: Endpoints, services: ServiceProcesses, app_db: asyncpg.Connection
) -> None:
    tag = uuid.uuid4().hex[:10]
    msg = EmailMessage()
    msg["From"] = "a@b.example"
    msg["Subject"] = "many files"
    msg["Message-ID"] = f"<{tag}@b.example>"
    msg.set_content("see attached")
    for n in range(51):  # the default limit is 50
        msg.add_attachment(b"x", maintype="application", subtype="pdf", filename=f"{n}.pdf")
    await send(endpoints, INBOUND_EMAIL, "email.received", contacts.email_event(msg.as_bytes()),
               key=tag)

    async def dead_letter() -> Any:
        found = [r for r in await read_all(endpoints.kafka_bootstrap_servers, dlq(INBOUND_EMAIL))
                 if r.key == tag.encode()]
        return found[0] if found else None
    record = await wait_for(dead_letter, what="the dead letter")
    assert "51 attachments, more than the limit of 50" in record.headers["dlq_reason"]


# --- chat and voice ----------------------------------------------------------------------------
async def test_a_chat_burst_is_one_contact(
    endpoints: Endpoints, services: ServiceProcesses, app_db: asyncpg.Connection
) -> None:
    session = f"s-{uuid.uuid4().hex[:10]}"
    for n, text in enumerate(["hi", "my parcel is late", f"card {CARD}"]):
        await send(endpoints, INBOUND_CHAT, "chat.message",
                   contacts.chat_message(session, text, message_id=f"m{n}"), key=session)
    case_id = await case_of(app_db, f"chat:{session}")
    types = await wait_types(app_db, case_id, ["contact.text_added"] * 2)
    assert types.count("contact.received") == 1
    await assert_clean(app_db, case_id)


async def test_a_call_with_ivr_and_transcript_and_a_voicemail(
    endpoints: Endpoints, services: ServiceProcesses, app_db: asyncpg.Connection
) -> None:
    call = f"c-{uuid.uuid4().hex[:10]}"
    await send(endpoints, INBOUND_VOICE, "call.started", contacts.call_started(call), key=call)
    await send(endpoints, INBOUND_VOICE, "call.ivr_selection",
               {"call_id": call, "menu": "main", "selection": "2", "label": "billing",
                "selected_at": now()}, key=call)
    await send(endpoints, INBOUND_VOICE, "call.transcript",
               {"call_id": call, "segments": [{"speaker": "customer", "text": f"card {CARD}",
                                               "start_seconds": 0, "end_seconds": 3}]}, key=call)
    case_id = await case_of(app_db, f"call:{call}")
    await wait_types(app_db, case_id, ["case.opened", "contact.received",
                                       "contact.text_added", "contact.text_added"])
    await assert_clean(app_db, case_id)

    voicemail = f"c-{uuid.uuid4().hex[:10]}"
    await send(endpoints, INBOUND_VOICE, "voicemail.received",
               {"call_id": voicemail, "from_number": "020 7183 8750", "received_at": now(),
                "duration_seconds": 12, "transcript": "please call me back"}, key=voicemail)
    vm_case = await case_of(app_db, f"call:{voicemail}")
    await wait_types(app_db, vm_case, ["case.opened", "contact.received"])


# --- adapters ----------------------------------------------------------------------------------
async def test_each_front_end_adapter_opens_a_case(
    endpoints: Endpoints, services: ServiceProcesses, app_db: asyncpg.Connection
) -> None:
    tag = uuid.uuid4().hex[:10]
    twilio = json.loads(fixture("webhooks", "twilio", "call-status-ringing.json").read_text())
    twilio["CallSid"] = f"CA{tag}"
    await send(endpoints, INBOUND_VOICE, "twilio.call_status", {"params": twilio}, key=f"CA{tag}")
    connect = json.loads(fixture("webhooks", "amazon-connect",
                                 "connectContactFlowEventAll.json").read_text())
    connect["Details"]["ContactData"]["ContactId"] = f"ac-{tag}"
    await send(endpoints, INBOUND_VOICE, "connect.contact_event", {"event": connect},
               key=f"ac-{tag}")
    chatwoot = load_jsonish(fixture("webhooks", "chatwoot", "message_created.docs-sample.jsonish"))
    chatwoot["conversation"]["id"] = tag
    chatwoot["content"] = f"Hi, card {CARD}"
    await send(endpoints, INBOUND_CHAT, "chatwoot.webhook", {"body": chatwoot}, key=tag)
    for key in (f"call:CA{tag}", f"call:ac-{tag}", f"chat:chatwoot-{tag}"):
        case_id = await case_of(app_db, key)
        await wait_types(app_db, case_id, ["case.opened", "contact.received"])
        await assert_clean(app_db, case_id)
