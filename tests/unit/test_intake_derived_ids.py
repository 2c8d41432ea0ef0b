"""Ids intake derives come from the inbound event's CloudEvents source *and* id.

CloudEvents promises only that the pair is unique, so two front-ends that both send id "42"
are two contacts. Records processed before the change (ids derived from the id alone) are
recognised when redelivered and change nothing (docs/intake.md, "Derived ids").
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.intake import core
from services.intake.app import IntakeHandler
from shared.contracts import inbound as ib
from shared.contracts.base import derive_event_id, inbound_cause
from shared.contracts.envelope import Envelope
from shared.settings import Settings

NOW = datetime(2025, 3, 14, 9, 30, tzinfo=UTC)
texts = st.text(min_size=1, max_size=40)


def chat(session: str = "s-1") -> core.IncomingContact:
    message = ib.ChatMessage(session_id=session, message_id="m1", text="Where is my parcel?",
                             sent_at=NOW)
    contact = core.understand("chat.message", message, NOW)
    assert contact is not None
    return contact


def ids(source: str, ce_id: str, contact: core.IncomingContact | None = None
        ) -> tuple[str | None, list[uuid.UUID]]:
    decision, case_id = core.decide(contact or chat(), None, inbound_cause(source, ce_id), NOW)
    return case_id, [e.event_id for e in decision.events]


@given(texts, texts)
def test_the_same_source_and_id_give_the_same_ids(source: str, ce_id: str) -> None:
    assert ids(source, ce_id) == ids(source, ce_id)


@given(texts, texts, texts)
def test_another_source_with_the_same_id_is_another_case(a: str, b: str, ce_id: str) -> None:
    if a == b:
        return
    (case_a, events_a), (case_b, events_b) = ids(a, ce_id), ids(b, ce_id)
    assert case_a != case_b
    assert not set(events_a) & set(events_b)


@given(texts, texts, texts, texts)
def test_the_pair_is_unambiguous(s1: str, i1: str, s2: str, i2: str) -> None:
    """"a/b" + "c" and "a" + "b/c" are different events."""
    if (s1, i1) != (s2, i2):
        assert inbound_cause(s1, i1) != inbound_cause(s2, i2)


# --- records processed before the change ----------------------------------------------------
class FakeConn:
    """A database with nothing in it but these case-log event ids; writes are recorded."""

    def __init__(self, logged: set[uuid.UUID] = frozenset()) -> None:  # type: ignore[assignment]
        self.logged = logged
        self.writes: list[str] = []

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        return []

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        if "AS thread_keys" in sql:  # the first look: no directory entry, no thread rows
            return {"customer_id": None, "thread_keys": [], "thread_cases": []}
        if "AS latest" in sql:  # the case joined: never solved, no chat session
            return {"latest": None, "contact_id": None, "last_message_at": None,
                    "replied": False}
        return None

    async def fetchval(self, sql: str, *args: Any) -> Any:
        if "FROM case_log WHERE event_id" in sql:
            return bool(self.logged & set(args[0]))
        return None

    async def execute(self, sql: str, *args: Any) -> str:
        self.writes.append(sql)
        return ""

    async def executemany(self, sql: str, args: Any) -> None:
        self.writes.append(sql)


def envelope(source: str = "acme/chat-widget", ce_id: str = "42") -> Envelope:
    return Envelope(id=ce_id, source=source, type="chat.started", time=NOW)


STARTED = ib.ChatStarted(session_id="s-9", started_at=NOW,
                         customer=ib.CustomerIdentity(email="ada@example.com"))


@pytest.fixture
def handler() -> IntakeHandler:
    return IntakeHandler(Settings(intake_parse_workers=0))


async def test_a_new_record_opens_its_case_under_source_and_id(handler: IntakeHandler) -> None:
    conn = FakeConn()
    decision = await handler(conn, envelope(), STARTED, NOW)  # type: ignore[arg-type]
    assert [e.type for e in decision.events] == ["case.opened", "contact.activity_recorded"]
    assert decision.events[0].event_id == derive_event_id(
        inbound_cause("acme/chat-widget", "42"), "case.opened")
    assert conn.writes, "its thread keys and case are remembered"


async def test_a_record_processed_before_the_change_changes_nothing(
        handler: IntakeHandler) -> None:
    conn = FakeConn({derive_event_id("42", "case.opened")})  # as derived from ce_id alone
    decision = await handler(conn, envelope(), STARTED, NOW)  # type: ignore[arg-type]
    assert decision.events == ()
    assert conn.writes == []


async def test_only_the_legacy_ids_of_this_id_count(handler: IntakeHandler) -> None:
    conn = FakeConn({derive_event_id("41", "case.opened")})
    decision = await handler(conn, envelope(), STARTED, NOW)  # type: ignore[arg-type]
    assert [e.type for e in decision.events] == ["case.opened", "contact.activity_recorded"]


async def test_a_record_sent_after_the_upgrade_is_never_taken_for_an_old_one() -> None:
    """Another front-end reusing id 42 after the upgrade is a contact of its own, even though
    the log has a case of the old 42."""
    handler = IntakeHandler(Settings(intake_parse_workers=0), started_at=NOW)
    conn = FakeConn({derive_event_id("42", "case.opened")})
    later = envelope().model_copy(update={"time": NOW.replace(minute=31)})
    decision = await handler(conn, later, STARTED, NOW)  # type: ignore[arg-type]
    assert [e.type for e in decision.events] == ["case.opened", "contact.activity_recorded"]
    earlier = envelope().model_copy(update={"time": NOW.replace(minute=29)})
    assert (await handler(conn, earlier, STARTED, NOW)).events == ()  # type: ignore[arg-type]


def test_the_legacy_lookup_covers_every_step_intake_derives() -> None:
    """`core.STEPS` is what the lookup of old ids asks for: every event `decide` can emit."""
    call = core.understand("call.started", ib.CallStarted(
        call_id="c-1", from_number="+14155550100", to_number="+14155550199", started_at=NOW), NOW)
    assert call is not None
    cases = [(chat(), None), (chat(), core.Thread(case_id="case-1", solved=True)),
             (chat(), core.Thread(case_id="case-1", burst_contact_id="contact-1")), (call, None),
             (core.understand("chat.started", STARTED, NOW), "case-1")]
    seen = set()
    for contact, thread in cases:
        assert contact is not None
        decision, _ = core.decide(contact, thread, "cause", NOW)
        for event in decision.events:
            assert event.event_id == derive_event_id("cause", event.type)
            seen.add(event.type)
    assert seen == set(core.STEPS)
