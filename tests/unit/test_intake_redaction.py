"""Guarantee 6 across every channel: a card number typed into any field never reaches an event.

Payloads are generated from each inbound contract's type (hypothesis-jsonschema 0.23 does not run
on Hypothesis 6.170, see the report on issue 3); a Luhn-valid PAN is written into one of their
string fields; whatever intake makes of it (new
case, known case, solved case, chat burst) is checked for the PAN in any form.
"""

from __future__ import annotations

import base64
import types
import typing
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from services.intake import core
from shared.channels import registry
from shared.contracts import inbound as ib
from shared.contracts.base import Contract
from shared.events import Decision
from shared.redaction import compile_patterns
from tests.unit.test_redaction import pans, typed

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
DIRECT_TYPES = {t: m for models in registry.inbound_topics().values() for t, m in models.items()
                if t not in ("email.received", "twilio.call_status", "connect.contact_event",
                             "chatwoot.webhook")}
THREADS = [None, core.Thread(case_id="case-k", how="thread"),
           core.Thread(case_id="case-k", how="reference", solved=True),
           core.Thread(case_id="case-k", how="session", burst_contact_id="contact-b")]


def values_of(annotation: Any) -> st.SearchStrategy[Any]:
    """Plain JSON values for a field type (Hypothesis' own pydantic inference trips on
    Optional fields with max_length, so the few types our contracts use are spelled out)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*[values_of(a) for a in args])
    if origin is typing.Literal:
        return st.sampled_from(args)
    if origin is list:
        return st.lists(values_of(args[0]), max_size=3)
    if isinstance(annotation, type) and issubclass(annotation, Contract):
        return instances(annotation)
    simple: dict[Any, st.SearchStrategy[Any]] = {
        str: st.text(min_size=1, max_size=30), type(None): st.none(), bool: st.booleans(),
        float: st.floats(0, 10_000), int: st.integers(0, 10_000),
        datetime: st.datetimes(timezones=st.just(UTC)).map(datetime.isoformat),
    }
    return simple[annotation]


def instances(model: type[Contract]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({name: values_of(f.annotation)
                                  for name, f in model.model_fields.items()})


def string_paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, str):
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in string_paths(v, (*path, k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in string_paths(v, (*path, i))]
    return []


def with_inserted(value: Any, path: tuple[Any, ...], text: str) -> Any:
    if not path:
        return f"{value} {text} " if value else f"{text} "
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = with_inserted(value[path[0]], path[1:], text)
    return copy


def assert_no_pan(decision: Decision, pan: str, form: str) -> None:
    for event in decision.events:
        dumped = event.data.model_dump_json()
        assert pan not in dumped and form not in dumped, (event.type, dumped)


def outcomes(event_type: str, payload: Contract, pan: str, form: str) -> None:
    try:
        contact = core.understand(event_type, payload, NOW)
    except core.Unprocessable:
        return
    if contact is None:
        return
    for thread in THREADS:
        decision, _ = core.decide(contact, thread, "evt-pan", NOW)
        assert_no_pan(decision, pan, form)


@pytest.mark.parametrize("event_type", sorted(DIRECT_TYPES))
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(data=st.data(), pan=pans(), style=st.sampled_from(["plain", "fours", "amex"]),
       separator=st.sampled_from([" ", "-"]))
def test_no_pan_in_any_field_of_chat_and_voice_events_reaches_the_log(
        event_type: str, data: st.DataObject, pan: str, style: str, separator: str) -> None:
    model = DIRECT_TYPES[event_type]
    raw = data.draw(instances(model))
    paths = string_paths(raw)
    assume(paths)
    form = typed(pan, style, separator)
    mutated = with_inserted(raw, data.draw(st.sampled_from(paths)), form)
    try:
        payload = model.model_validate(mutated)
    except ValidationError:
        assume(False)  # the PAN made a date, literal or length invalid: the runtime DLQs that
        return
    outcomes(event_type, payload, pan, form)


EMAIL_FIELDS = ["subject", "name", "plain", "html", "filename", "reply-quote"]


@settings(max_examples=150, deadline=None)
@given(pan=pans(), style=st.sampled_from(["plain", "fours", "amex"]),
       separator=st.sampled_from([" ", "-"]), where=st.sampled_from(EMAIL_FIELDS),
       noise=st.text(st.characters(exclude_categories=["Cc", "Cs", "Zl", "Zp", "Nd", "No"]),
                     max_size=40))
def test_no_pan_anywhere_in_an_email_reaches_the_log(
        pan: str, style: str, separator: str, where: str, noise: str) -> None:
    form = typed(pan, style, separator)
    card = f" {form} "
    msg = EmailMessage()
    msg["From"] = f"Maya{card if where == 'name' else ''} <maya@example.com>"
    msg["Subject"] = f"Refund {noise}{card if where == 'subject' else ''}"
    msg["Message-ID"] = "<p@x.example>"
    body = f"Hello {noise}{card if where == 'plain' else ''}"
    if where == "reply-quote":
        body += f"\n\nOn Mon, Apr 2, 2012 at 6:26 PM, Support wrote:\n>{card}\n"
    if where == "html":  # an HTML-only email: the text comes from inscriptis
        msg.set_content(f"<p>Hello {noise}<b>{card}</b></p>", subtype="html")
    else:
        msg.set_content(body)
    if where == "filename":
        msg.add_attachment(b"%PDF", maintype="application", subtype="pdf",
                           filename=f"card{card.strip()}.pdf")
    payload = ib.EmailReceived(mailbox="support@shop.example",
                               raw_mime=base64.b64encode(msg.as_bytes()), received_at=NOW)
    outcomes("email.received", payload, pan, form)


def test_extra_patterns_are_masked_everywhere() -> None:
    config = core.IntakeConfig(redaction_patterns=compile_patterns([r"\bACCT-\d{8}\b"]))
    chat = ib.ChatMessage(session_id="ACCT-12345678", message_id="m", text="acct ACCT-87654321",
                          sent_at=NOW)
    contact = core.understand("chat.message", chat, NOW, config)
    assert contact is not None
    decision, _ = core.decide(contact, None, "evt-x", NOW, config)
    for event in decision.events:
        assert "ACCT-" not in event.data.model_dump_json()


# --- every form of issue 11 through the intake pure path (understand + decide) ----------------
from tests.unit.test_redaction_forms import (  # noqa: E402
    compact,
    digits_in,
    ibans,
    spoken,
    spoken_digits,
    tokens,
    typed_forms,
)

_DERIVED = {"case_id", "contact_id", "reference", "sha256"}


def strings_of(value: Any, key: str = "") -> list[str]:
    """Every string an event carries, but for the ids intake derives itself."""
    if isinstance(value, str):
        return [] if key in _DERIVED else [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in strings_of(v, k)]
    if isinstance(value, list):
        return [s for v in value for s in strings_of(v, key)]
    return []


def events_of(event_type: str, payload: Contract) -> list[Any]:
    contact = core.understand(event_type, payload, NOW)
    assert contact is not None
    found = []
    for thread in THREADS:
        decision, _ = core.decide(contact, thread, "evt-forms", NOW)
        found += [event.data.model_dump() for event in decision.events]
    assert found
    return found


def assert_nothing_leaks(events: list[Any], pan: str | None = None, iban: str | None = None,
                         secret: str | None = None) -> None:
    for event in events:
        for text in strings_of(event):
            if pan:
                assert pan not in digits_in(text) and pan not in spoken_digits(text), text
            if iban:
                assert iban not in compact(text), text
            if secret:
                assert secret not in text, text


HEADER_SEPARATORS = [" ", "-", ".", "  ", "\u00a0", "\u2013", "/", "_", "\u200b"]


@st.composite
def header_forms(draw: st.DrawFn, pan: str) -> str:
    separator = draw(st.sampled_from(HEADER_SEPARATORS))
    return separator.join(pan[i : i + 4] for i in range(0, len(pan), 4))


def mime(subject: str = "Refund", name: str = "Maya", plain: str | None = "Hello",
         html: str | None = None, filename: str | None = None, cte: str | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"] = f'"{name}" <maya@example.com>'
    msg["Subject"] = subject
    msg["Message-ID"] = "<forms@x.example>"
    if plain is not None:
        msg.set_content(plain, cte=cte) if cte else msg.set_content(plain)
    if html is not None:
        if plain is None:
            msg.set_content(html, subtype="html", cte=cte) if cte else msg.set_content(
                html, subtype="html")
        else:
            msg.add_alternative(html, subtype="html")
    if filename is not None:
        msg.add_attachment(b"%PDF", maintype="application", subtype="pdf", filename=filename)
    return msg.as_bytes()


def email(raw: bytes) -> list[Any]:
    payload = ib.EmailReceived(mailbox="support@shop.example", raw_mime=base64.b64encode(raw),
                               received_at=NOW)
    return events_of("email.received", payload)


HTML_SHAPES = [
    "<p>My card: {form}</p>",
    "<table><tr><td>Card</td><td>{cells}</td></tr></table>",
    "<div>{form}</div><div>thanks</div>",
    "<p>{spans}</p>",
]


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(data=st.data(), pan=pans(),
       where=st.sampled_from(["subject", "name", "plain", "plain-qp", "plain-b64", "html",
                              "html-only", "filename", "quote"]))
def test_no_card_form_in_any_part_of_an_email_reaches_an_event(
        data: st.DataObject, pan: str, where: str) -> None:
    """Typed forms in headers, bodies (plain, quoted-printable, base64, HTML with table cells,
    line breaks, entities and inline tags) and file names, as intake parses and redacts them."""
    if where in ("subject", "name"):
        form = data.draw(header_forms(pan))
        raw = mime(subject=f"Refund {form}" if where == "subject" else "Refund",
                   name=f"Maya {form}" if where == "name" else "Maya")
    elif where == "filename":
        form = data.draw(header_forms(pan)).replace("/", "_")
        raw = mime(filename=f"card {form}.pdf")
    elif where.startswith("html"):
        shape = data.draw(st.sampled_from(HTML_SHAPES))
        groups = [pan[i : i + 4] for i in range(0, len(pan), 4)]
        body = shape.format(form=data.draw(typed_forms(pan)),
                            cells="</td><td>".join(groups),
                            spans="".join(f"<span>{g}</span>" for g in groups))
        raw = mime(plain=None if where == "html-only" else "see below", html=body)
    elif where == "quote":
        raw = mime(plain=f"Thanks!\n\nOn Mon, Apr 2, 2012 at 6:26 PM, Support wrote:\n> "
                         f"{data.draw(typed_forms(pan))}\n")
    else:
        cte = {"plain-qp": "quoted-printable", "plain-b64": "base64"}.get(where)
        raw = mime(plain=f"Hello, my card is {data.draw(typed_forms(pan))} thanks", cte=cte)
    assert_nothing_leaks(email(raw), pan=pan)


@settings(max_examples=80, deadline=None)
@given(iban=ibans(), token=tokens(), where=st.sampled_from(["plain", "html", "subject"]))
def test_no_iban_or_token_in_an_email_reaches_an_event(iban: str, token: str, where: str) -> None:
    grouped = " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))
    text = f"IBAN {grouped}, api_key={token}"
    if where == "subject":
        raw = mime(subject=f"Refund to {grouped}")
        assert_nothing_leaks(email(raw), iban=iban)
        return
    raw = mime(plain=text) if where == "plain" else mime(plain=None, html=f"<p>{text}</p>")
    assert_nothing_leaks(email(raw), iban=iban, secret=token)


@settings(max_examples=100, deadline=None)
@given(data=st.data(), pan=pans(), secret=tokens())
def test_no_card_or_secret_typed_or_pasted_in_a_chat_reaches_an_event(
        data: st.DataObject, pan: str, secret: str) -> None:
    """Chat text arrives as typed, raw HTML included (`<br>`, `&nbsp;`, table cells)."""
    text = f"my card {data.draw(typed_forms(pan))} and token is {secret}"
    chat = ib.ChatMessage(session_id="s-1", message_id="m-1", text=text, sent_at=NOW)
    assert_nothing_leaks(events_of("chat.message", chat), pan=pan, secret=secret)


@settings(max_examples=100, deadline=None)
@given(pan=pans(), language=st.sampled_from(["en", "es", "de"]),
       cut=st.integers(1, 12), voicemail=st.booleans())
def test_no_spoken_card_number_in_a_call_reaches_an_event(
        pan: str, language: str, cut: int, voicemail: bool) -> None:
    """Said in words, in a voicemail transcript or split over two segments of a call."""
    said = spoken(pan, language, " ")
    if voicemail:
        payload: Contract = ib.VoicemailReceived(
            call_id="c-1", from_number="+14155550123", received_at=NOW, duration_seconds=30,
            transcript=f"hi my card number is {said} please call back")
        assert_nothing_leaks(events_of("voicemail.received", payload), pan=pan)
        return
    words = said.split(" ")
    segments = [ib.TranscriptSegment(speaker="customer", text=" ".join(words[:cut]),
                                     start_seconds=0, end_seconds=5),
                ib.TranscriptSegment(speaker="agent", text="go on", start_seconds=5,
                                     end_seconds=6),
                ib.TranscriptSegment(speaker="customer", text=" ".join(words[cut:]),
                                     start_seconds=6, end_seconds=12)]
    payload = ib.CallTranscript(call_id="c-1", segments=segments)
    assert_nothing_leaks(events_of("call.transcript", payload), pan=pan)
