"""Intake's core: raw inbound events → understood contacts → case events."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import pytest

from services.intake import core
from services.intake.email_parsing import parse_email
from shared.channels.voice import call_contact_id
from shared.contracts import inbound as ib
from shared.contracts.base import derive_event_id
from shared.contracts.case_events import (
    CaseOpened,
    ContactActivityRecorded,
    ContactReceived,
    ContactTextAdded,
)
from shared.events import Decision

NOW = datetime(2025, 3, 14, 9, 30, tzinfo=UTC)
SENT = datetime(2025, 3, 14, 9, 29, tzinfo=UTC)
PDF = b"%PDF-1.4 the receipt " * 50


def mime(message_id: str | None = "<m1@mail.example>", subject: str = "Refund for order 81234",
         body: str = "Hi, I was charged twice. Card 4111 1111 1111 1111, exp 09/27.",
         headers: dict[str, str] | None = None, attachment: bytes | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Maya Patel <Maya@Example.com>"
    msg["To"] = "support@shop.example"
    msg["Subject"] = subject
    if message_id:
        msg["Message-ID"] = message_id
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    if attachment is not None:
        msg.add_attachment(attachment, maintype="application", subtype="pdf",
                           filename="receipt.pdf")
    return msg.as_bytes()


def email(raw: bytes) -> ib.EmailReceived:
    return ib.EmailReceived.model_validate(
        {"mailbox": "support@shop.example", "raw_mime": base64.b64encode(raw).decode(),
         "received_at": SENT.isoformat()})


def dsn() -> bytes:
    """A delivery status notification (RFC 3464): multipart/report, no auto headers."""
    report = EmailMessage()
    report["From"] = "MAILER-DAEMON@mx.example"
    report["Subject"] = "Undelivered Mail Returned to Sender"
    report["Message-ID"] = "<dsn-1@mx.example>"
    report.set_content("Your message could not be delivered.")
    report.add_attachment("Reporting-MTA: dns; mx.example\n", subtype="delivery-status")
    report.replace_header("Content-Type", report["Content-Type"].replace("mixed", "report"))
    return report.as_bytes()


def run(event_type: str, payload: Any, cause: str = "evt-1",
        known: str | None = None) -> tuple[Decision, str | None, core.IncomingContact]:
    contact = core.understand(event_type, payload, NOW)
    decision, case_id = core.decide(contact, known, cause, NOW)
    return decision, case_id, contact


def types(decision: Decision) -> list[str]:
    return [e.type for e in decision.events]


# --- email -----------------------------------------------------------------------------------
def test_a_new_email_opens_a_case_with_its_redacted_contact() -> None:
    decision, case_id, contact = run("email.received", email(mime()), cause="evt-mail")
    assert case_id == core.new_case_id("evt-mail")
    assert types(decision) == ["case.opened", "contact.received"]
    opened, received = (e.data for e in decision.events)
    assert isinstance(opened, CaseOpened) and isinstance(received, ContactReceived)
    assert opened.case_id == received.case_id == case_id
    assert opened.opened_at == received.received_at == SENT
    assert opened.customer.email == "maya@example.com" and opened.customer.name == "Maya Patel"
    assert received.subject == "Refund for order 81234"
    assert "4111" not in received.text.replace("****1111", "")
    assert "[card ****1111]" in received.text and "[redacted]" in received.text
    assert received.details == {"mailbox": "support@shop.example"}
    assert all(e.case_id == case_id for e in decision.events)
    assert contact.own_keys == ("email:<m1@mail.example>",)


def test_attachments_travel_as_metadata_only() -> None:
    decision, _, _ = run("email.received", email(mime(attachment=PDF)))
    received = decision.events[1].data
    assert isinstance(received, ContactReceived)
    [meta] = received.attachments
    assert meta.filename == "receipt.pdf" and meta.content_type == "application/pdf"
    assert meta.size == len(PDF) and meta.sha256 == hashlib.sha256(PDF).hexdigest()
    dumped = received.model_dump_json()
    assert "PDF-1.4" not in dumped and base64.b64encode(PDF[:30]).decode() not in dumped


def test_a_card_number_in_the_subject_is_redacted_too() -> None:
    decision, _, _ = run("email.received", email(mime(subject="card 5500 0000 0000 0004")))
    for event in decision.events:
        assert "5500 0000" not in event.data.model_dump_json()


def test_a_reply_to_a_known_case_joins_it_without_opening_one() -> None:
    raw = mime(message_id="<m2@mail.example>", subject="Re: Refund",
               headers={"In-Reply-To": "<m1@mail.example>",
                        "References": "<m0@mail.example> <m1@mail.example>"})
    contact = core.understand("email.received", email(raw), NOW)
    # Its own id is a duplicate check (dedup_key), not a way to find the thread.
    assert contact.lookup_keys == ("email:<m1@mail.example>", "email:<m0@mail.example>")
    assert contact.dedup_key == "email:<m2@mail.example>"
    decision, case_id = core.decide(contact, "case-known", "evt-2", NOW)
    assert case_id == "case-known"
    assert types(decision) == ["contact.received"]
    assert decision.events[0].case_id == "case-known"


def test_a_bare_message_id_without_angle_brackets_is_understood() -> None:
    """Seen in the wild (ruby-mail's mix_caps_content_type.eml): it used to raise IndexError."""
    contact = core.understand("email.received", email(mime(message_id="20100219.foo@co.example")),
                              NOW)
    assert contact.own_keys == ("email:<20100219.foo@co.example>",)


def test_an_email_without_message_id_still_opens_a_case() -> None:
    decision, case_id, contact = run("email.received", email(mime(message_id=None)))
    assert contact.own_keys == () and case_id is not None
    assert types(decision) == ["case.opened", "contact.received"]


def test_an_html_only_email_becomes_plain_text() -> None:
    msg = EmailMessage()
    msg["From"] = "a@b.example"
    msg["Message-ID"] = "<h@b.example>"
    msg.set_content("<p>My <b>parcel</b> is late</p><script>x()</script>", subtype="html")
    parsed = parse_email(msg.as_bytes())
    assert parsed.text == "My parcel is late"


@pytest.mark.parametrize("raw", [
    mime(headers={"Auto-Submitted": "auto-replied"}),
    mime(headers={"Precedence": "bulk"}),
    mime(headers={"X-Autoreply": "yes"}),
    dsn(),
], ids=["auto-submitted", "precedence-bulk", "x-autoreply", "multipart-report"])
def test_automated_email_never_opens_a_case(raw: bytes) -> None:
    decision, case_id, contact = run("email.received", email(raw))
    assert contact.automated and not contact.may_open_case
    assert (decision, case_id) == (Decision(), None)
    # On a known thread it is recorded as activity, never as a customer contact.
    decision, case_id, _ = run("email.received", email(raw), known="case-k")
    assert case_id == "case-k" and types(decision) == ["contact.activity_recorded"]
    activity = decision.events[0].data
    assert isinstance(activity, ContactActivityRecorded)
    assert activity.details["automated"] == "true"


def test_auto_submitted_no_is_a_person() -> None:
    _, case_id, contact = run("email.received", email(mime(headers={"Auto-Submitted": "no"})))
    assert not contact.automated and case_id is not None


# --- chat and voice --------------------------------------------------------------------------
def chat_message(text: str = "Where is my parcel? card 4111111111111111") -> ib.ChatMessage:
    return ib.ChatMessage(session_id="s-1", message_id="m1", text=text, sent_at=SENT,
                          customer=ib.CustomerIdentity(name="Jonas Berg"))


def test_a_chat_message_opens_a_case_with_redacted_text() -> None:
    decision, case_id, contact = run("chat.message", chat_message(), cause="evt-chat")
    assert contact.own_keys == contact.lookup_keys == ("chat:s-1",)
    assert case_id == core.new_case_id("evt-chat")
    assert types(decision) == ["case.opened", "contact.received"]
    received = decision.events[1].data
    assert isinstance(received, ContactReceived)
    assert received.text == "Where is my parcel? card [card ****1111]"
    assert received.channel == "chat" and received.received_at == SENT


def test_chat_ended_of_an_unknown_session_records_nothing() -> None:
    ended = ib.ChatEnded(session_id="s-unknown", ended_at=SENT)
    assert run("chat.ended", ended)[:2] == (Decision(), None)
    assert run("chat.abandoned", ib.ChatAbandoned(session_id="s-x", abandoned_at=SENT))[:2] == \
        (Decision(), None)


def test_chat_ended_of_a_known_session_is_activity() -> None:
    decision, case_id, _ = run("chat.ended", ib.ChatEnded(session_id="s-1", ended_at=SENT),
                               known="case-c")
    assert case_id == "case-c" and types(decision) == ["contact.activity_recorded"]


def test_a_pre_chat_form_opens_the_case_with_its_identity_but_no_contact_yet() -> None:
    customer = ib.CustomerIdentity(name="Lena Vogel", email="lena@example.de", verified=True)
    started = ib.ChatStarted(session_id="s-2", started_at=SENT, language="de", customer=customer)
    decision, case_id, _ = run("chat.started", started)
    assert case_id is not None
    assert types(decision) == ["case.opened", "contact.activity_recorded"]
    opened, activity = (e.data for e in decision.events)
    assert isinstance(opened, CaseOpened) and opened.customer.verified
    assert isinstance(activity, ContactActivityRecorded)
    assert activity.details["language"] == "de"


def test_a_call_opens_a_case_for_the_caller() -> None:
    call = ib.CallStarted(call_id="c-1", from_number="+14155550123", to_number="+18005550100",
                          started_at=SENT)
    decision, _, _ = run("call.started", call)
    opened, received = (e.data for e in decision.events)
    assert isinstance(opened, CaseOpened) and isinstance(received, ContactReceived)
    assert opened.customer.phone == "+14155550123"
    assert received.text == "Inbound call from +14155550123"


def test_voice_events_after_the_call_never_open_a_case() -> None:
    transcript = ib.CallTranscript(call_id="c-9", segments=[ib.TranscriptSegment(
        speaker="customer", text="my card is 4111 1111 1111 1111", start_seconds=0,
        end_seconds=3)])
    assert run("call.transcript", transcript)[:2] == (Decision(), None)
    decision, _, _ = run("call.transcript", transcript, known="case-v")
    added = decision.events[0].data
    # The transcript becomes text of the call's contact, not a new contact.
    assert isinstance(added, ContactTextAdded)
    assert added.text == "my card is [card ****1111]"
    assert added.contact_id == call_contact_id("c-9")
    ended = ib.CallEnded(call_id="c-9", ended_at=SENT, duration_seconds=30)
    assert run("call.ended", ended)[:2] == (Decision(), None)


def test_a_voicemail_transcript_is_redacted() -> None:
    voicemail = ib.VoicemailReceived(call_id="c-3", from_number="+442071838750",
                                     received_at=SENT, duration_seconds=20,
                                     transcript="my pin is 4321, call me back")
    decision, _, _ = run("voicemail.received", voicemail)
    received = decision.events[1].data
    assert isinstance(received, ContactReceived)
    assert received.text == "my pin is [redacted] call me back"


# --- determinism -----------------------------------------------------------------------------
@pytest.mark.parametrize(("event_type", "payload"), [
    ("email.received", email(mime())), ("chat.message", chat_message()),
])
def test_the_same_cause_gives_the_same_events(event_type: str, payload: Any) -> None:
    first, first_case, _ = run(event_type, payload, cause="evt-7")
    again, again_case, _ = run(event_type, payload, cause="evt-7")
    assert first == again and first_case == again_case
    assert [e.event_id for e in first.events] == [
        derive_event_id("evt-7", "case.opened"), derive_event_id("evt-7", "contact.received")]
    other, other_case, _ = run(event_type, payload, cause="evt-8")
    assert other_case != first_case
    assert not {e.event_id for e in other.events} & {e.event_id for e in first.events}
