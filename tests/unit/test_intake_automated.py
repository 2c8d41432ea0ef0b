"""Automated-mail detection never drops a person: strong evidence only, subjects are weak; what
is set aside is recorded with its reason and can be released."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main
from services.intake import core, suppression
from services.intake.automated import automated_reason
from services.intake.email_parsing import parse_email
from shared.contracts import inbound as ib

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def mail(subject: str, sender: str = "maya.patel@example.com", body: str = "Hello,\n\nThanks.",
         **headers: str) -> bytes:
    m = EmailMessage()
    m["From"] = f"Maya Patel <{sender}>"
    m["To"] = "support@shop.example"
    m["Subject"] = subject
    m["Message-ID"] = f"<{abs(hash((subject, sender)))}@example.com>"
    for name, value in headers.items():
        m[name.replace("_", "-")] = value
    m.set_content(body)
    return bytes(m)


CUSTOMER_SUBJECTS = [
    "Undelivered package - order 4411",
    "Delivery failure: my parcel never came",
    "Non-delivery of order 5512",
    "Returned mail order refund",
    "Out of office hours support?",
    "Undeliverable: the address on my account is wrong",
    "Delivery Status Notification? I never got one",
    "Mail delivery failed when I wrote to you yesterday",
    "Automatic reply never came, is anyone there?",
    "Auto-reply said 48 hours, it has been a week",
    "Failure notice from your app when I pay",
    "Abwesenheitsnotiz? Ich brauche Hilfe mit meiner Bestellung",
    "Respuesta automática no resuelve mi problema",
]


@pytest.mark.parametrize("subject", CUSTOMER_SUBJECTS)
def test_a_customer_subject_alone_never_suppresses(subject: str) -> None:
    parsed = parse_email(mail(subject, body="My order never arrived, can you help? Maya"))
    assert not parsed.automated, parsed.automated_reason


@pytest.mark.parametrize("sender", [
    "bounce.house.rentals@example.com", "postmaster.jane@example.org", "noreplyjoe@example.com",
    "mailer.daemon.fan@example.net", "bounces-r-us@example.com", "daemon@example.com",
])
def test_senders_that_only_look_like_mailers_are_people(sender: str) -> None:
    assert not parse_email(mail("Question about my order", sender)).automated


def test_a_web_form_from_no_reply_with_a_reply_to_is_a_person() -> None:
    raw = mail("New contact form message", "noreply@shop.example",
               Reply_To="Maya Patel <maya.patel@example.com>")
    assert not parse_email(raw).automated
    assert parse_email(mail("Your receipt", "no-reply@shop.example")).automated_reason == \
        "no-reply sender (no-reply@)"


@pytest.mark.parametrize(("headers", "sender", "reason"), [
    ({"Auto-Submitted": "auto-replied"}, None, "auto-submitted: auto-replied"),
    ({"Auto-Submitted": "auto-generated; owner-email=x@example.com"}, None,
     "auto-submitted: auto-generated"),
    ({"X-Autoreply": "yes"}, None, "x-autoreply"),
    ({"X-Autorespond": "Out of office"}, None, "x-autorespond"),
    ({"Precedence": "bulk"}, None, "precedence: bulk"),
    ({"Precedence": "auto_reply"}, None, "precedence: auto_reply"),
    ({"X-Failed-Recipients": "gone@example.com"}, None, "x-failed-recipients"),
    ({"List-Unsubscribe": "<mailto:leave@example.com>"}, None,
     "mailing list (list-unsubscribe)"),
    ({"Return-Path": "<>"}, None, "null return-path"),
    ({}, "MAILER-DAEMON@mx.example.com", "mailer daemon sender (mailer-daemon@)"),
    ({}, "postmaster@example.com", "mailer daemon sender (postmaster@)"),
    ({}, "donotreply@bank.example", "no-reply sender (donotreply@)"),
])
def test_strong_evidence_suppresses(headers: dict[str, str], sender: str | None,
                                    reason: str) -> None:
    raw = mail("Hello", sender or "maya.patel@example.com", **headers)
    assert parse_email(raw).automated_reason == reason


def test_auto_submitted_no_is_a_person() -> None:
    assert not parse_email(mail("Hello", Auto_Submitted="no")).automated


def test_a_delivery_report_is_automated_but_a_forwarded_one_is_a_person() -> None:
    report = (b"From: Mail Delivery System <MAILER-DAEMON@mx.example.com>\n"
              b"Subject: Undelivered Mail Returned to Sender\nMIME-Version: 1.0\n"
              b"Content-Type: multipart/mixed; boundary=b1\n\n--b1\n"
              b"Content-Type: text/plain\n\nThis is the mail system at host mx.example.com.\n"
              b"--b1\nContent-Type: message/delivery-status\n\n"
              b"Reporting-MTA: dns; mx.example.com\n\nFinal-Recipient: rfc822; x@example.com\n"
              b"Action: failed\nStatus: 5.1.1\n--b1--\n")
    as_report = message_from_bytes(report, policy=policy.default)
    assert automated_reason(as_report, "maya.patel@example.com") == \
        "delivery report (message/delivery-status)"
    forward = EmailMessage()
    forward["From"] = "Maya Patel <maya.patel@example.com>"
    forward["Subject"] = "Fwd: Undelivered Mail Returned to Sender"
    forward.set_content("My email to your billing team bounced, see below. Maya")
    forward.add_attachment(as_report)
    assert not parse_email(bytes(forward)).automated


def test_two_weak_signals_together_suppress() -> None:
    ooo = mail("Out of office", body="I am currently out of the office until Monday with "
               "limited access to email.")
    assert parse_email(ooo).automated_reason == (
        "weak signals: subject: 'Out of office'; body: reads like an out-of-office notice")
    bounce = mail("Undeliverable: Your order", "mail-relay@example.com",
                  body="Delivery to the following recipient failed permanently:\n\n"
                       "   gone@example.com\n\n550 5.1.1 The email account does not exist.")
    assert parse_email(bounce).automated_reason is not None
    # A customer quoting a bounce in a reply: quoted lines are not the customer's words
    quoted = mail("Undelivered package - order 4411", body="Still nothing!\n\n> 550 5.1.1 "
                  "user unknown\n> Diagnostic-Code: smtp; 550")
    assert not parse_email(quoted).automated


# --- the suppression record and its release ---------------------------------------------------
def contact_of(raw: bytes) -> core.IncomingContact:
    event = ib.EmailReceived(mailbox="support@shop.example", raw_mime=base64.b64encode(raw),
                             received_at=NOW)
    contact = core.understand("email.received", event, NOW)
    assert contact is not None
    return contact


def test_suppressed_mail_keeps_its_reason_and_redacted_text_and_can_be_released() -> None:
    raw = mail("Re: order 4411", "mailer-daemon@mx.example.com",
               body="Card 4111 1111 1111 1111 could not be charged.",
               In_Reply_To="<order-4411@shop.example>")
    contact = contact_of(raw)
    decision, case_id = core.decide(contact, None, "cause-1", NOW)
    assert (decision.events, case_id) == ((), None)  # no case: RFC 3834
    record = suppression.record(contact, "cause-1", core.DEFAULT_CONFIG)
    assert record == suppression.record(contact, "cause-1", core.DEFAULT_CONFIG)  # redelivery
    assert record.reason == "mailer daemon sender (mailer-daemon@)"
    assert "4111 1111 1111 1111" not in record.text and "[card ****1111]" in record.text
    ring = core.DEFAULT_CONFIG.ring()  # message ids are kept only keyed (issue 11)
    assert record.related_keys == (ring.stored("email:<order-4411@shop.example>"),)
    assert record.message_key == ring.stored(contact.dedup_key or "")

    resubmitted = contact_of(suppression.release_email(record))
    # intake finds the released record by the re-submission's own Message-ID (its release_key),
    # and threads it with the record's keyed keys (integration: test_intake_suppression.py)
    assert resubmitted.dedup_key == f"email:<{record.suppression_id}@switchboard.invalid>"
    assert resubmitted.lookup_keys == ()
    person = suppression.as_person(resubmitted, record.suppression_id)
    decision, case_id = core.decide(person, None, "cause-2", NOW)
    types = [e.type for e in decision.events]
    assert types == ["case.opened", "contact.received"] and case_id is not None
    assert decision.events[1].data.details["released_from"] == record.suppression_id  # type: ignore[attr-defined]


# --- switchboard intake parse ---------------------------------------------------------------
def test_intake_parse_prints_what_intake_would_store(tmp_path: Path) -> None:
    (tmp_path / "customer.eml").write_bytes(mail(
        "Undelivered package - order 4411",
        body="My card 4111 1111 1111 1111 was charged but the parcel never came.\n\n"
             "On Mon, 23 Nov 2026 at 09:00, Shop <support@shop.example> wrote:\n> Hi"))
    (tmp_path / "bounce.eml").write_bytes(mail("Hello", "MAILER-DAEMON@mx.example.com"))
    (tmp_path / "broken.eml").write_bytes(b"From: x@example.com\n" * 600 + b"\nbody")
    result = CliRunner().invoke(main, ["intake", "parse", "--json", str(tmp_path)])
    assert result.exit_code == 0, result.output
    rows = {Path(r["file"]).name: r for r in map(json.loads, result.output.splitlines())}
    customer = rows["customer.eml"]
    assert customer["automated"] is False and customer["automated_reason"] is None
    assert customer["visible_text"].startswith("My card 4111")
    assert customer["stored_text"] == ("My card [card ****1111] was charged but the parcel "
                                       "never came.")
    assert customer["language"] == "en" and customer["stored_as"] == "contact.received"
    bounce = rows["bounce.eml"]
    assert bounce["automated"] is True and bounce["stored_as"] == "suppressed"
    assert bounce["automated_reason"] == "mailer daemon sender (mailer-daemon@)"
    assert set(rows["broken.eml"]) == {"file", "rejected"}
    assert "headers" in rows["broken.eml"]["rejected"]
    human = CliRunner().invoke(main, ["intake", "parse", str(tmp_path / "customer.eml")])
    assert "automated  no" in human.output and "[card ****1111]" in human.output
