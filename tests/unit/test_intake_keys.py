"""Issue 11 on the pure path: no card data in anything intake keeps, publishes, logs or
dead-letters; characters PostgreSQL refuses cleaned; keyed tokens; who may join a case;
verified identity only from an authenticated source.

The database side (tables, the dead-letter row, the DLQ topic) is in
tests/integration/test_intake_keys.py.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from dataclasses import replace
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.intake import core, suppression
from services.intake.authres import sender_authentication
from services.intake.identity import first_mailbox
from services.intake.subjects import case_reference, reference_in
from shared import dead_letters
from shared.contracts import inbound as ib
from shared.contracts.case_events import CaseOpened
from shared.failures import clean_text
from shared.keys import Keyring
from shared.redaction import redact
from tests.support.adversarial import binary_headers, kafka_record
from tests.support.contacts import raw_email
from tests.support.intake_pipeline import NOW, run_record

RING = Keyring.from_values("k" * 40)
CONFIG = core.IntakeConfig(keys=RING, trusted_authserv_ids=("mx.shop.example",))


# --- what no output may hold ---------------------------------------------------------------------
def luhn_digit(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return str((10 - total % 10) % 10)


def iban_de(bban: str) -> str:
    check = 98 - int(bban + "131400") % 97  # "DE00" moved to the end, letters as numbers
    return f"DE{check:02d}{bban}"


SECRETS = ["sk_live_4eC39HqLyjWDarjtT1zdp7dc", "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"]
pans = st.text("0123456789", min_size=14, max_size=14).map(lambda b: "4" + b + luhn_digit(
    "4" + b))
ibans = st.text("0123456789", min_size=18, max_size=18).map(iban_de)
separators = st.sampled_from([" ", "-", ".", ""])


def spaced(number: str, sep: str) -> str:
    return sep.join(number[i:i + 4] for i in range(0, len(number), 4))


def leaks(text: str, pan: str, iban: str) -> list[str]:
    found = []
    if pan in re.sub(r"\D", "", text):
        found.append("card number")
    if iban in re.sub(r"[^0-9A-Z]", "", text.upper()):
        found.append("IBAN")
    found += [s[:8] for s in SECRETS if s in text]
    return found


def all_strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, bytes):
        return [value.decode("utf-8", "replace")]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*all_strings(k), *all_strings(v))]
    if isinstance(value, list | tuple):
        return [s for v in value for s in all_strings(v)]
    return []


# --- the events, with the card number, IBAN and secrets in every field -------------------------
def chat_events(pan: str, iban: str, sep: str) -> list[tuple[str, str, dict[str, Any]]]:
    card = spaced(pan, sep)
    words = f"card {card} iban {iban} key {SECRETS[0]} and {SECRETS[1]}"
    customer = {"name": f"Maya {card}", "email": f"{pan}@example.com", "external_id": card,
                "phone": "+14155550123"}
    return [
        ("helpdesk.inbound.chat", "chat.started", {
            "session_id": f"s-{card}", "started_at": NOW.isoformat(), "customer": customer,
            "language": "en", "widget": words[:250]}),
        ("helpdesk.inbound.chat", "chat.message", {
            "session_id": f"s-{card}", "message_id": f"m-{pan}", "text": words,
            "sent_at": NOW.isoformat(), "customer": customer}),
        ("helpdesk.inbound.voice", "call.started", {
            "call_id": f"c-{card}", "from_number": "+14155550123", "to_number": "+18005550100",
            "started_at": NOW.isoformat(), "customer": customer}),
        ("helpdesk.inbound.voice", "call.transcript", {
            "call_id": f"c-{card}", "segments": [
                {"speaker": "customer", "text": words, "start_seconds": 0, "end_seconds": 1}]}),
        ("helpdesk.inbound.voice", "voicemail.received", {
            "call_id": f"v-{pan}", "from_number": "+14155550123",
            "received_at": NOW.isoformat(), "duration_seconds": 3, "transcript": words}),
    ]


def email_event(pan: str, iban: str, sep: str, automated: bool = False) -> dict[str, Any]:
    card = spaced(pan, sep)
    mail = EmailMessage()
    mail["From"] = f"Maya {card} <maya.{pan}@example.com>"
    mail["To"] = "support@shop.example"
    mail["Subject"] = f"Card {card}"
    mail["Message-ID"] = f"<{pan}@mail.example>"
    mail["In-Reply-To"] = f"<{card.replace(' ', '')}.0@mail.example>"
    if automated:
        mail["Auto-Submitted"] = "auto-replied"
    mail.set_content(f"My card {card}, IBAN {iban}, token {SECRETS[0]}, {SECRETS[1]}")
    mail.add_attachment(b"x", maintype="application", subtype="pdf",
                        filename=f"card_{pan}.pdf")
    return {"mailbox": "support@shop.example",
            "raw_mime": base64.b64encode(bytes(mail)).decode(), "received_at": NOW.isoformat()}


def records(pan: str, iban: str, sep: str) -> list[Any]:
    found = []
    for offset, (topic, kind, body) in enumerate([
            *chat_events(pan, iban, sep),
            ("helpdesk.inbound.email", "email.received", email_event(pan, iban, sep))]):
        record = kafka_record(topic, binary_headers(kind, f"evt-{offset}"),
                              json.dumps(body).encode(), offset)
        found.append(replace(record, key=body.get("session_id", body.get("call_id", pan))
                                     .encode()))
    return found


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pan=pans, iban=ibans, sep=separators)
def test_no_card_number_iban_or_secret_leaves_the_pure_path(
        pan: str, iban: str, sep: str, caplog: pytest.LogCaptureFixture) -> None:
    """Events published and logged, suppression records, and the keys intake stores."""
    caplog.set_level(logging.DEBUG)
    caplog.clear()
    contact_keys: list[str] = []
    for record in records(pan, iban, sep):
        outcome = run_record(record, config=CONFIG)
        assert outcome.kind == "contact", outcome.reason
        assert outcome.contact is not None
        for out in outcome.records:
            key = out.key if isinstance(out.key, str) else out.key.decode()
            for text in [out.value.decode(), key, *out.headers.values()]:
                assert not leaks(text, pan, iban), (record.topic, text[:300])
        contact = outcome.contact
        contact_keys += [*contact.lookup_keys, *contact.own_keys, contact.dedup_key or "",
                         *core.customer_keys(contact)]
        if contact.subject_key:
            contact_keys.append(f"subject:{contact.subject_key}")
    automated = run_record(kafka_record(
        "helpdesk.inbound.email", binary_headers("email.received", "evt-auto"),
        json.dumps(email_event(pan, iban, sep, automated=True)).encode()), config=CONFIG)
    assert automated.contact is not None and automated.contact.automated
    kept = suppression.record(automated.contact, "evt-auto", CONFIG)
    for text in all_strings([*kept.__dict__.values()]):
        assert not leaks(text, pan, iban), text[:300]
    # what the app writes for every key is its keyed form; as written, the keys do hold the
    # number (a session id the front-end chose), which is why they are never stored so
    assert any(leaks(k, pan, iban) for k in contact_keys)
    for key in contact_keys:
        if key:
            assert not leaks(RING.stored(key), pan, iban)
    for line in caplog.messages:
        assert not leaks(line, pan, iban), line


@settings(max_examples=25, deadline=None, derandomize=True)
@given(pan=pans, iban=ibans, sep=separators)
def test_no_card_number_iban_or_secret_reaches_a_dead_letter_copy(pan: str, iban: str,
                                                                  sep: str) -> None:
    """The redacted copy of records that are dead-lettered: cut off, with JSON escapes, with
    the card number in the event type (quoted by the reason), with an email in base64."""
    card = spaced(pan, sep)
    escaped = "".join(f"\\u{ord(c):04x}" for c in card)
    bodies = [
        *(json.dumps(body).encode() for _, _, body in chat_events(pan, iban, sep)),
        json.dumps(email_event(pan, iban, sep)).encode(),
        ('{"session_id": "s", "text": "' + escaped + '", "iban": "' + iban).encode(),
        f"not json at all: {card} {iban} {SECRETS[0]}".encode(),
        json.dumps({"data_base64": base64.b64encode(
            f'{{"text": "{card} {SECRETS[1]}"}}'.encode()).decode()}).encode(),
    ]
    for body in bodies:
        headers = [*binary_headers(f"chat.{card}"), ("ce_subject", f"s-{card}".encode())]
        copy = dead_letters.redacted_copy(f"s-{card}".encode(), headers, body)
        texts = [copy.key.decode(), copy.value.decode(),
                 *(base64.b64decode(v).decode() for _, v in copy.headers)]
        for text in texts:
            assert not leaks(text, pan, iban), text[:300]
    record = kafka_record("helpdesk.inbound.chat", binary_headers(f"chat.{card}"), b"{}")
    outcome = run_record(record, config=CONFIG)
    assert outcome.kind == "rejected"
    # the runtime keeps and logs the reason redacted (ServiceRuntime.dead_letter)
    assert leaks(outcome.reason, pan, iban) and not leaks(clean_text(redact(outcome.reason)),
                                                          pan, iban)


# --- characters PostgreSQL refuses -----------------------------------------------------------
def test_u0000_and_lone_surrogates_are_cleaned_not_dead_lettered() -> None:
    text = "hi\x00 there \ud800 card 4\x001\x001\x001\x00 1111 1111 1111"
    customer = {"name": "Ma\x00ya\udfff", "email": "maya\x00@example.com"}
    body = {"session_id": "s-\x00-1", "message_id": "m\x001", "text": text,
            "sent_at": NOW.isoformat(), "customer": customer}
    raw = json.dumps(body).encode()  # JSON escapes: "\u0000", "\ud800"
    assert b"\\u0000" in raw and b"\\ud800" in raw
    outcome = run_record(kafka_record("helpdesk.inbound.chat", binary_headers("chat.message"),
                                      raw), config=CONFIG)
    assert outcome.kind == "contact", outcome.reason
    values = [r.value.decode() for r in outcome.records]
    for value in values:
        assert "\\u0000" not in value and "\x00" not in value
        value.encode("utf-8")  # no lone surrogate
    received = json.loads(values[-1])
    assert received["text"].startswith("hi there") and "[card ****1111]" in received["text"]
    assert received["customer"]["name"] == "Maya\ufffd"


def test_a_utf16_body_labelled_us_ascii_opens_a_case() -> None:
    body = "Hello, my order 81234 has not arrived. Card 4111 1111 1111 1111.".encode("utf-16")
    message_id = "<utf16\x00@mail.example>"
    raw = (f"From: Maya <maya@example.com>\r\nSubject: Order\x00 81234\r\nMessage-ID: "
           f"{message_id}\r\nContent-Type: text/plain; charset=us-ascii\r\n"
           "Content-Transfer-Encoding: 8bit\r\n\r\n").encode() + body
    event = {"mailbox": "support@shop.example", "raw_mime": base64.b64encode(raw).decode()}
    outcome = run_record(kafka_record("helpdesk.inbound.email", binary_headers("email.received"),
                                      json.dumps(event).encode()), config=CONFIG)
    assert outcome.kind == "contact", outcome.reason
    received = json.loads(outcome.records[-1].value)
    assert "\\u0000" not in outcome.records[-1].value.decode()
    assert "Hello, my order 81234" in received["text"] and "[card ****1111]" in received["text"]
    assert received["subject"] == "Order  81234"  # a control in a subject reads as a space
    assert outcome.contact is not None
    for key in outcome.contact.own_keys:  # kept only keyed: a NUL in the id does not matter
        assert "\x00" not in RING.stored(key)


# --- case tokens -------------------------------------------------------------------------------
def test_case_tokens_are_keyed_and_older_tokens_are_still_read() -> None:
    other = Keyring.from_values("o" * 40)
    token = case_reference("case-1", RING)
    assert re.fullmatch(r"SB-[0-9A-F]{12}", token)
    assert token == case_reference("case-1", RING) != case_reference("case-1", other)
    assert token != case_reference("case-2", RING)
    assert reference_in(f"Re: Refund [#{token.lower()}]") == token
    assert reference_in("Re: Refund [#SB-0A1B2C3D]") == "SB-0A1B2C3D"  # handed out before
    contact = core.understand("email.received", _email_payload(raw_email("<a@x>", "Hi", "Hi")),
                              NOW, CONFIG)
    assert contact is not None
    decision, case_id = core.decide(contact, None, "evt-1", NOW, CONFIG)
    opened = decision.events[0].data
    assert isinstance(opened, CaseOpened) and opened.reference == case_reference(case_id or "",
                                                                                RING)


def _email_payload(raw: bytes, vouched: bool = False) -> ib.EmailReceived:
    return ib.EmailReceived(mailbox="support@shop.example", raw_mime=base64.b64encode(raw),
                            received_at=NOW, vouched=vouched)


# --- who may join a case -----------------------------------------------------------------------
def _email(sender: str = "Maya Patel <maya@example.com>", auth: str | None = None,
           vouched: bool = False, automated: bool = False) -> core.IncomingContact:
    headers = {"Authentication-Results": auth} if auth else {}
    if automated:
        headers["Auto-Submitted"] = "auto-replied"
    contact = core.understand("email.received", _email_payload(raw_email(
        "<r@x>", "Re: Refund", "Is there news?", sender=sender, in_reply_to="<m1@x>",
        headers=headers), vouched), NOW, CONFIG)
    assert contact is not None
    return contact


@pytest.mark.parametrize(("contact", "how", "participant", "joins"), [
    (_email(), "thread", True, True),
    (_email(), "thread", False, False),  # a stranger with the victim's Message-ID
    (_email(), "reference", False, False),  # ... or the victim's case token
    (_email(vouched=True), "thread", False, True),  # the front-end vouches
    (_email(automated=True), "thread", False, True),  # activity only, never a reopen
    (_email(auth="mx.shop.example; dmarc=fail header.from=example.com"), "thread", True, False),
    (_email(auth="mx.shop.example; dmarc=fail header.from=example.com"), "subject-window", True,
     False),
])
def test_an_email_joins_only_a_case_its_sender_takes_part_in(
        contact: core.IncomingContact, how: str, participant: bool, joins: bool) -> None:
    assert core.may_join(contact, core.Candidate("case-v", how, participant)) is joins


def test_chat_joins_its_session_and_another_open_case_only_when_signed_in() -> None:
    def chat(verified: bool) -> core.IncomingContact:
        contact = core.understand("chat.message", ib.ChatMessage(
            session_id="s-1", message_id="m1", text="hi", sent_at=NOW,
            customer=ib.CustomerIdentity(email="maya@example.com", verified=verified)), NOW)
        assert contact is not None
        return contact
    assert core.may_join(chat(False), core.Candidate("c", "thread", True))
    assert not core.may_join(chat(False), core.Candidate("c", "customer", True))
    assert core.may_join(chat(True), core.Candidate("c", "customer", True))


def test_a_refused_reply_opens_a_new_case_linked_to_the_one_it_named() -> None:
    thread = core.Thread(related_case_id="case-victim")
    decision, case_id = core.decide(_email("eve@attacker.example"), thread, "evt-9", NOW, CONFIG)
    opened = decision.events[0].data
    assert isinstance(opened, CaseOpened)
    assert case_id != "case-victim" and opened.related_case_id == "case-victim"
    assert [e.type for e in decision.events] == ["case.opened", "contact.received"]
    assert all(e.case_id == case_id for e in decision.events)


# --- identity ----------------------------------------------------------------------------------
TRUSTED = ("mx.shop.example",)


@pytest.mark.parametrize(("fields", "sender", "result"), [
    (["mx.shop.example; dmarc=pass (p=reject) header.from=example.com"], "a@example.com", "pass"),
    (["mx.shop.example 1; dkim=pass header.d=example.com header.s=s1; spf=fail"],
     "a@example.com", "pass"),
    (["mx.shop.example; dkim=pass header.i=@example.com"], "a@example.com", "pass"),
    (["mx.shop.example; dkim=pass header.d=attacker.example"], "a@example.com", None),
    (["mx.shop.example; dkim=pass header.d=com"], "a@example.com", None),  # not aligned
    (["mx.shop.example; dmarc=fail header.from=example.com"], "a@example.com", "fail"),
    (["mx.shop.example; dmarc=pass header.from=attacker.example"], "a@example.com", None),
    (["attacker.example; dmarc=pass header.from=example.com"], "a@example.com", None),
    (["MX.Shop.Example; DMARC=Pass header.from=EXAMPLE.COM"], "a@example.com", "pass"),
    (["mx.shop.example (our mx; dmarc=fail); dmarc=pass header.from=example.com"],
     "a@example.com", "pass"),  # a comment is not a result
    (['mx.shop.example; dmarc=pass header.from="example.com"'], "a@example.com", "pass"),
    (["mx.shop.example; dmarc=pass header.from=example.com",
      "mx.shop.example; dmarc=fail header.from=example.com"], "a@example.com", "fail"),
    (["mx.shop.example; none"], "a@example.com", None),
    ([";dmarc=pass header.from=example.com"], "a@example.com", None),
    (["mx.shop.example; dmarc=pass header.from=example.com"], None, None),
])
def test_authentication_results_are_believed_only_from_a_trusted_mta(
        fields: list[str], sender: str | None, result: str | None) -> None:
    assert sender_authentication(fields, TRUSTED, sender) == result


def test_no_trusted_mta_means_no_verdict() -> None:
    fields = ["mx.shop.example; dmarc=pass header.from=example.com"]
    assert sender_authentication(fields, (), "a@example.com") is None


def test_verified_comes_only_from_an_authenticated_source() -> None:
    passed = "mx.shop.example; dmarc=pass header.from=example.com"
    assert _email(auth=passed).customer.verified
    assert not _email().customer.verified
    assert not _email(auth="attacker.example; dmarc=pass header.from=example.com"
                      ).customer.verified
    # the trick: a pass for bob's domain does not verify eve's address
    tricked = _email(sender="bob@example.com <eve@attacker.example>", auth=passed)
    assert tricked.customer.email == "eve@attacker.example" and not tricked.customer.verified
    assert _email(vouched=True).customer.verified
    entry_verified = core.decide(_email(), core.Thread(directory=replace(
        _directory(), verified=True)), "e", NOW, CONFIG)[0].events[0].data
    assert isinstance(entry_verified, CaseOpened) and not entry_verified.customer.verified


def _directory() -> Any:
    from services.intake.identity import DirectoryEntry
    return DirectoryEntry("cust-1", ("Maya",), ("maya@example.com",), (), "gold", False)


addresses = st.from_regex(r"[a-z]{1,8}@[a-z]{1,8}\.(com|org|example)", fullmatch=True)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(shown=addresses, real=addresses, style=st.sampled_from(
    ["{shown} <{real}>", '"{shown}" <{real}>', "{shown} via Support <{real}>",
     '"Support" <{shown}> <{real}>', "=?utf-8?q?{shown_q}?= <{real}>", "({shown}) <{real}>",
     "{shown}<{real}>", '"{shown}, x" <{real}>']))
def test_the_display_name_never_names_the_sender(shown: str, real: str, style: str) -> None:
    """CVE-2023-27043 and kin: whatever the display name says, the sender is the address in
    angle brackets (parsed by identity.first_mailbox, the same on every Python version)."""
    header = style.format(shown=shown, real=real, shown_q=shown.replace("@", "=40"))
    mailbox = first_mailbox(header)
    if style.startswith('"Support" <'):  # two angle addresses: the first one is the sender
        assert mailbox.address == shown
    else:
        assert mailbox.address == real, header
    contact = core.understand("email.received", _email_payload(
        f"From: {header}\r\nSubject: x\r\nMessage-ID: <m@x>\r\n\r\nhi".encode()), NOW, CONFIG)
    assert contact is not None
    assert contact.customer.email == mailbox.address
    assert contact.customer.name is None or "@" not in contact.customer.name


def test_a_released_suppression_is_looked_up_by_its_own_message_key() -> None:
    contact = _email(automated=True)
    kept = suppression.record(contact, "evt-s", CONFIG)
    assert kept.message_key == RING.stored("email:<r@x>")
    assert kept.related_keys == (RING.stored("email:<m1@x>"),)
    raw = suppression.release_email(kept)
    assert f"<{kept.suppression_id}@switchboard.invalid>".encode() in raw
    assert b"In-Reply-To" not in raw and b"<m1@x>" not in raw


def test_now_is_timezone_aware() -> None:  # the fixtures above rely on it
    assert NOW.tzinfo is not None and datetime.now(UTC) > NOW
