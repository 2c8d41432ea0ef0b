"""Threading decisions of the core: tokens, subjects, reopening, duplicates, chat bursts, voice."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.intake import core
from services.intake.identity import DirectoryEntry
from services.intake.subjects import case_reference, normalise_subject, reference_in
from shared.contracts import inbound as ib
from shared.contracts.case_events import (
    CaseOpened,
    CaseReopened,
    ContactReceived,
    ContactTextAdded,
)
from tests.support.contacts import raw_email
from tests.unit.test_intake_email import event

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def types(decision: object) -> list[str]:
    return [e.type for e in decision.events]  # type: ignore[attr-defined]


@pytest.mark.parametrize("subject", [
    "Refund for order 81234", "Re: Refund for order 81234", "RE: RE: refund for ORDER 81234",
    "AW: Refund for order 81234", "SV: Refund for order 81234", "RE[2]: Refund for order 81234",
    "Fwd: Re: Refund for order 81234", "TR: Refund for order 81234",
    "[External] Re: Refund   for order 81234", "Re: [#SB-0A1B2C3D] Refund for order 81234",
])
def test_reply_and_forward_prefixes_normalise_away(subject: str) -> None:
    assert normalise_subject(subject) == "refund for order 81234"


def test_the_case_token_is_found_in_any_case_and_is_stable() -> None:
    reference = case_reference("case-1")
    assert reference == case_reference("case-1") != case_reference("case-2")
    assert reference_in(f"Re: Refund [#{reference.lower()}]") == reference
    assert reference_in("Re: Refund [SB-12]") is None


def understand_email(subject: str = "Refund", message_id: str = "<a@x.example>",
                     **kw: str) -> core.IncomingContact:
    contact = core.understand("email.received", event(raw_email(message_id, subject, "Hi",
                                                                **kw)), NOW)
    assert contact is not None
    return contact


def test_a_new_case_carries_its_token() -> None:
    decision, case_id = core.decide(understand_email(), None, "evt-1", NOW)
    opened = decision.events[0].data
    assert isinstance(opened, CaseOpened) and case_id is not None
    assert opened.reference == case_reference(case_id)


def test_an_email_to_a_solved_case_reopens_it() -> None:
    contact = understand_email(f"Re: Refund [#{case_reference('case-s')}]")
    assert contact.reference == case_reference("case-s")
    thread = core.Thread(case_id="case-s", how="reference", solved=True)
    decision, case_id = core.decide(contact, thread, "evt-2", NOW)
    assert case_id == "case-s" and types(decision) == ["case.reopened", "contact.received"]
    reopened = decision.events[0].data
    assert isinstance(reopened, CaseReopened)
    assert reopened.reason == "email.received by reference"
    assert reopened.contact_id == decision.events[1].data.contact_id  # type: ignore[attr-defined]


def test_an_auto_reply_to_a_solved_case_does_not_reopen_it() -> None:
    contact = understand_email(headers={"Auto-Submitted": "auto-replied"})
    decision, _ = core.decide(contact, core.Thread(case_id="case-s", solved=True), "e", NOW)
    assert types(decision) == ["contact.activity_recorded"]


def test_a_duplicate_delivery_records_nothing() -> None:
    decision, case_id = core.decide(understand_email(), core.Thread(case_id="case-d",
                                                                    duplicate=True), "e2", NOW)
    assert (decision.events, case_id) == ((), "case-d")


def test_the_directory_identifies_the_customer() -> None:
    entry = DirectoryEntry("cust-7", ("Maya Patel",), ("maya@example.com",), (), "gold", True)
    decision, _ = core.decide(understand_email(), core.Thread(directory=entry), "e3", NOW)
    opened = decision.events[0].data
    assert isinstance(opened, CaseOpened)
    # the directory says who owns the address, not that this unauthenticated mail is theirs
    assert (opened.customer.external_id, opened.customer.tier, opened.customer.verified) == (
        "cust-7", "gold", False)


# --- chat --------------------------------------------------------------------------------------
def chat(text: str, message_id: str = "m1") -> core.IncomingContact:
    contact = core.understand("chat.message", ib.ChatMessage(
        session_id="s-1", message_id=message_id, text=text, sent_at=NOW), NOW)
    assert contact is not None
    return contact


def test_a_burst_of_chat_messages_is_one_contact() -> None:
    first, case_id = core.decide(chat("hi"), None, "c1", NOW)
    received = first.events[1].data
    assert isinstance(received, ContactReceived)
    thread = core.Thread(case_id=case_id, how="session", burst_contact_id=received.contact_id)
    second, _ = core.decide(chat("my parcel", "m2"), thread, "c2", NOW)
    assert types(second) == ["contact.text_added"]
    added = second.events[0].data
    assert isinstance(added, ContactTextAdded) and added.contact_id == received.contact_id
    # After the burst (or an agent's reply) the app finds no burst contact: a new contact.
    later, _ = core.decide(chat("still there?", "m3"), core.Thread(case_id=case_id), "c3", NOW)
    assert types(later) == ["contact.received"]


# --- voice -------------------------------------------------------------------------------------
def test_ivr_selection_becomes_text_and_hints_of_the_call_contact() -> None:
    started = core.understand("call.started", ib.CallStarted(
        call_id="c-1", from_number="(415) 555-0123", to_number="+18005550100",
        started_at=NOW), NOW)
    assert started is not None and started.customer.phone == "+14155550123"
    opened, case_id = core.decide(started, None, "v1", NOW)
    ivr = core.understand("call.ivr_selection", ib.CallIvrSelection(
        call_id="c-1", menu="main", selection="2", label="billing", selected_at=NOW), NOW)
    assert ivr is not None
    decision, _ = core.decide(ivr, core.Thread(case_id=case_id), "v2", NOW)
    added = decision.events[0].data
    assert isinstance(added, ContactTextAdded)
    assert added.contact_id == opened.events[1].data.contact_id  # type: ignore[attr-defined]
    assert added.text == "IVR main: billing" and added.details["hint.ivr_label"] == "billing"


@pytest.mark.parametrize(("event_type", "payload"), [
    ("call.abandoned", ib.CallAbandoned(call_id="c-2", abandoned_at=NOW, wait_seconds=95,
                                        from_number="+442071838750")),
    ("voicemail.received", ib.VoicemailReceived(call_id="c-3", from_number="+442071838750",
                                                received_at=NOW, duration_seconds=20)),
])
def test_an_abandoned_call_or_a_voicemail_opens_a_callback_case(event_type: str,
                                                                 payload: object) -> None:
    contact = core.understand(event_type, payload, NOW)
    assert contact is not None
    decision, case_id = core.decide(contact, None, "v3", NOW)
    assert case_id is not None and types(decision) == ["case.opened", "contact.received"]
    received = decision.events[1].data
    assert isinstance(received, ContactReceived) and received.details["callback"] == "requested"


def test_an_abandoned_call_without_a_number_opens_nothing() -> None:
    contact = core.understand("call.abandoned", ib.CallAbandoned(
        call_id="c-4", abandoned_at=NOW, wait_seconds=3), NOW)
    assert contact is not None and core.decide(contact, None, "v4", NOW)[1] is None
