"""Front-end platforms' real payloads (Twilio, Amazon Connect, Chatwoot) and customer identity."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from services.intake import core
from services.intake.identity import normalise_email, normalise_phone
from shared.contracts import inbound as ib
from tests.support.intake_fixtures import fixture, load_jsonish

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def twilio(name: str) -> ib.TwilioCallStatus:
    return ib.TwilioCallStatus(params=json.loads(fixture("webhooks", "twilio", name).read_text()))


def test_a_twilio_ringing_callback_is_a_call_started() -> None:
    contact = core.understand("twilio.call_status", twilio("call-status-ringing.json"), NOW)
    assert contact is not None and contact.source_type == "call.started"
    assert contact.lookup_keys == ("call:CA11111111111111111111111111111111",)
    assert contact.customer.phone == "+14155550123" and contact.customer.name == "MAYA PATEL"
    assert contact.at == datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    decision, case_id = core.decide(contact, None, "tw-1", NOW)
    assert case_id is not None and [e.type for e in decision.events] == [
        "case.opened", "contact.received"]


def test_a_twilio_no_answer_is_an_abandoned_call_with_a_callback_case() -> None:
    contact = core.understand("twilio.call_status", twilio("call-status-no-answer.json"), NOW)
    assert contact is not None and contact.source_type == "call.abandoned"
    assert contact.customer.phone == "+442071838750"
    assert core.decide(contact, None, "tw-2", NOW)[1] is not None


@pytest.mark.parametrize(("params", "reason"), [
    ({"CallStatus": "ringing"}, "missing CallSid"),
    ({"CallSid": "CA1", "CallStatus": "ringing", "To": "+1800"}, "missing From"),
    ({"CallSid": "CA1", "CallStatus": "exploded"}, "unknown CallStatus 'exploded'"),
])
def test_a_twilio_callback_without_what_we_need_is_refused_precisely(
        params: dict[str, str], reason: str) -> None:
    with pytest.raises(core.Unprocessable, match=reason):
        core.understand("twilio.call_status", ib.TwilioCallStatus(params=params), NOW)


def test_outbound_twilio_calls_are_not_contacts() -> None:
    params = {"CallSid": "CA9", "CallStatus": "ringing", "Direction": "outbound-api"}
    assert core.understand("twilio.call_status", ib.TwilioCallStatus(params=params), NOW) is None


def test_an_amazon_connect_contact_flow_event_is_a_call_started() -> None:
    event = json.loads(fixture("webhooks", "amazon-connect",
                               "connectContactFlowEventAll.json").read_text())
    contact = core.understand("connect.contact_event", ib.ConnectContactEvent(event=event), NOW)
    assert contact is not None and contact.source_type == "call.started"
    assert contact.lookup_keys == ("call:5ca32fbd-8f92-46af-92a5-6b0f970f0efe",)
    assert contact.customer.phone == "+11234567890"


def test_amazon_connect_eventbridge_events() -> None:
    disconnected = load_jsonish(fixture("webhooks", "amazon-connect",
                                        "contact-events-02.jsonish"))
    contact = core.understand("connect.contact_event",
                              ib.ConnectContactEvent(event=disconnected), NOW)
    assert contact is not None and contact.source_type == "call.ended"
    assert contact.lookup_keys == ("call:11111111-1111-1111-1111-111111111111",)
    connected = json.loads(fixture("webhooks", "amazon-connect",
                                   "contact-events-01.json").read_text())
    # CONNECTED_TO_AGENT: the call is already known and routed; nothing to record.
    assert core.understand("connect.contact_event",
                           ib.ConnectContactEvent(event=connected), NOW) is None


def test_chatwoot_message_created_is_a_chat_message() -> None:
    body = load_jsonish(fixture("webhooks", "chatwoot", "message_created.docs-sample.jsonish"))
    contact = core.understand("chatwoot.webhook", ib.ChatwootWebhook(body=body), NOW)
    assert contact is not None and contact.source_type == "chat.message"
    assert contact.lookup_keys == ("chat:chatwoot-1",) and contact.text == "Hi"
    assert contact.at == datetime(2020, 3, 3, 13, 5, 57, tzinfo=UTC)
    outgoing = {**body, "message_type": "outgoing"}
    assert core.understand("chatwoot.webhook", ib.ChatwootWebhook(body=outgoing), NOW) is None


def test_chatwoot_conversation_created_is_a_chat_started() -> None:
    body = json.loads(fixture("webhooks", "chatwoot",
                              "conversation_created.constructed.json").read_text())
    contact = core.understand("chatwoot.webhook", ib.ChatwootWebhook(body=body), NOW)
    assert contact is not None and contact.source_type == "chat.started"
    assert contact.customer.email == "jonas@example.org"
    assert contact.customer.phone == "+4915112345678"
    assert contact.customer.external_id == "chatwoot:42"


# --- identity ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("number", "region", "e164"), [
    ("(415) 555-0123", "US", "+14155550123"), ("+1 415 555 0123", "GB", "+14155550123"),
    ("020 7183 8750", "GB", "+442071838750"), ("0151 1234 5678", "DE", "+4915112345678"),
    ("anonymous", "US", None), ("", "US", None),
])
def test_phone_numbers_become_e164(number: str, region: str, e164: str | None) -> None:
    assert normalise_phone(number, region) == e164


def test_email_addresses_are_normalised() -> None:
    assert normalise_email(" Maya@Example.COM ") == "maya@example.com"
    assert normalise_email("<maya@bücher.example>") == "maya@xn--bcher-kva.example"
    assert normalise_email("not an address") is None
